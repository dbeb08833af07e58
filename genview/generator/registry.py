"""Where model names come from: genview's core, entry points (group ``genview.generators``), ``module:Class``.

Three doors, one interface (`genview.generator.GeneratorDeclaration` + `ViewGenerator`):

* the core generators (`genview.generator.builtin`: icgan, cc-icgan, unclip, eldm);
* entry points in the group ``genview.generators`` of any installed distribution, genview's own
  included (that is how sd-image-variations arrives). An entry point names a declaration or a
  generator class whose ``declaration`` attribute is one; its name is the model name;
* ``--model package.module:Class`` (or ``package.module:DECLARATION``): imported on request.

Nothing here imports torch: declarations are torch-free, classes are imported by `get_generator_class`.
A ``module:Class`` name imports code, so the job service accepts only the models its operator enables
(`genview.api.settings.Settings.enabled_models`), checked before any name is resolved.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from importlib import metadata
from typing import TYPE_CHECKING, Any

from genview.generator.builtin import BUILTIN
from genview.generator.declaration import GeneratorDeclaration

if TYPE_CHECKING:
    from genview.generator.base import ViewGenerator

#: The entry-point group a distribution registers generators in.
ENTRY_POINT_GROUP = "genview.generators"
#: The distribution whose models count as built in (the job service enables them by default).
CORE_DISTRIBUTION = "genview"
#: ``package.module:Attr`` as --model accepts it.
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A model name and where it came from (what `genview models list` prints)."""

    name: str
    origin: str  # "core", "entry point", "import path", "register()"
    source: str  # the distribution and version, the import path, or the module
    declaration: GeneratorDeclaration | None = None
    error: str | None = None  # why a plugin could not be loaded (it is listed, not usable)

    @property
    def builtin(self) -> bool:
        """True for models genview itself ships (its core and its own entry points)."""
        return self.error is None and (self.origin == "core" or self.source.split(" ")[0] == CORE_DISTRIBUTION)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return {"name": self.name, "origin": self.origin, "source": self.source, "builtin": self.builtin,
                "error": self.error}


#: Models registered at run time with `register` (tests, notebooks): name -> entry.
_REGISTERED: dict[str, ModelEntry] = {}


def as_declaration(obj: Any, where: str) -> GeneratorDeclaration:
    """Return the declaration an entry point or import path names: a declaration, or a class carrying one."""
    if isinstance(obj, GeneratorDeclaration):
        return obj
    declaration = getattr(obj, "declaration", None)
    if isinstance(obj, type) and isinstance(declaration, GeneratorDeclaration):
        return declaration
    raise TypeError(f"{where} is neither a genview.generator.GeneratorDeclaration nor a generator class with a "
                    f"`declaration` attribute (got {type(obj).__name__})")


def _dist_label(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


@functools.lru_cache(maxsize=1)
def _entry_point_models() -> tuple[ModelEntry, ...]:
    """Load every entry point of the group once per process; a broken plugin is listed with its error."""
    entries: dict[str, ModelEntry] = {}
    core = {d.name for d in BUILTIN}
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        source = _dist_label(ep)
        if ep.name in core or ep.name in entries:
            entries.setdefault(ep.name + " (duplicate)", ModelEntry(
                ep.name, "entry point", source, error=f"name {ep.name!r} is already taken; this entry point is ignored"))
            continue
        try:
            declaration = as_declaration(ep.load(), f"entry point {ep.name} = {ep.value}")
            if declaration.name != ep.name:
                raise ValueError(f"entry point {ep.name} = {ep.value} declares the name {declaration.name!r}")
        except Exception as exc:  # a plugin that fails to import must not take the other models down
            entries[ep.name] = ModelEntry(ep.name, "entry point", source, error=f"{type(exc).__name__}: {exc}")
            continue
        entries[ep.name] = ModelEntry(ep.name, "entry point", source, declaration)
    return tuple(entries.values())


def refresh() -> None:
    """Forget the entry points read so far (after installing a plugin in a running process)."""
    _entry_point_models.cache_clear()


def model_entries() -> list[ModelEntry]:
    """Every model name genview knows, with its origin: core, then entry points, then `register`ed ones."""
    entries = [ModelEntry(d.name, "core", f"{CORE_DISTRIBUTION} ({d.generator.split(':')[0]})", d) for d in BUILTIN]
    entries += _entry_point_models()
    entries += _REGISTERED.values()
    return entries


def model_names() -> list[str]:
    """Return the usable model names (core and installed plugins), sorted."""
    return sorted(e.name for e in model_entries() if e.error is None)


def builtin_model_names() -> list[str]:
    """Return the models genview itself ships: its core and its own entry points (the service's default)."""
    return sorted(e.name for e in model_entries() if e.builtin)


def is_import_path(name: str) -> bool:
    """True for ``package.module:Attr`` (a model named by where its code is)."""
    return bool(IMPORT_PATH.match(name))


def get_declaration(name: str) -> GeneratorDeclaration:
    """Return the declaration of a model name or ``package.module:Attr``; ValueError lists the known names."""
    for entry in model_entries():
        if entry.name == name and entry.error is None:
            return entry.declaration
    broken = [e for e in model_entries() if e.name == name and e.error]
    if broken:
        raise ValueError(f"model {name!r} ({broken[0].origin} from {broken[0].source}) failed to load: {broken[0].error}")
    if is_import_path(name):
        module_name, _, attr = name.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"model {name!r}: cannot import it ({type(exc).__name__}: {exc})") from None
        try:
            return as_declaration(obj, name)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(model_names())} "
                     "(or give package.module:Class of an installed generator)")


def model_params(name: str) -> dict[str, str]:
    """Return the params model ``name`` accepts, name -> type; empty if the model is unknown."""
    try:
        return {p.name: p.type for p in get_declaration(name).params}
    except ValueError:
        return {}


def path_params(name: str) -> list[str]:
    """Return the params of model ``name`` that name a file or folder (checked against read roots)."""
    try:
        return get_declaration(name).params.path_names()
    except ValueError:
        return []


def register(declaration: GeneratorDeclaration, source: str | None = None) -> None:
    """Register a generator declaration in this process (a notebook, a test); plugins use entry points."""
    if not isinstance(declaration, GeneratorDeclaration):
        raise TypeError("register() takes a genview.generator.GeneratorDeclaration")
    if declaration.name in {e.name for e in model_entries() if e.origin != "register()"}:
        raise ValueError(f"model name {declaration.name!r} is already taken")
    _REGISTERED[declaration.name] = ModelEntry(declaration.name, "register()", source or declaration.generator, declaration)


def unregister(name: str) -> None:
    """Remove a model added with `register`."""
    _REGISTERED.pop(name, None)


def get_generator_class(name: str) -> type[ViewGenerator]:
    """Return the generator class of a model name or import path; a clear error lists the known names."""
    declaration = get_declaration(name)
    cls = declaration.load_class()
    if getattr(cls, "declaration", None) is not declaration and getattr(cls, "declaration", None) != declaration:
        raise TypeError(f"{declaration.generator}: its `declaration` attribute must be the declaration that names it")
    return cls


def weights_required(model: str) -> str:
    """The error for a job without weights (the CLI's flag check and the loader say the same)."""
    return (f"--weights is required for --model {model}: give the checkpoint directory "
            f"(see `genview models --help`), or make random test weights with "
            f"`genview models init {model} --preset tiny --out DIR`")
