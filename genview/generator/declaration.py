"""What a generator declares about itself without importing torch: name, class, params, presets, size.

A `GeneratorDeclaration` is the torch-free half of a generator: the job service validates a job with
it (params, cost cap), `genview models list / info` prints it, the CLI parses ``--param`` with it. The
class it names (``module:Class``, a `genview.generator.ViewGenerator` subclass) is imported only where
the model runs. A plugin's entry point (group ``genview.generators``) names a declaration, or a class
whose ``declaration`` attribute is one.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any, Mapping

from genview.generator.params import Param, ParamError, ParamSpec

if TYPE_CHECKING:
    from genview.generator.base import ViewGenerator


@dataclasses.dataclass(frozen=True)
class GeneratorDeclaration:
    """A generator's public, torch-free description.

    name:          the value of ``--model`` / a job's ``model`` field.
    generator:     ``"package.module:Class"``, the `ViewGenerator` subclass, imported only to run it.
    params:        every ``--param`` it accepts, typed, with defaults and bounds (`genview.generator.params`).
    summary:       one line for `genview models list`.
    presets:       the random-weight presets its ``from_preset`` builds (``tiny`` at least, for tests).
    needs_labels:  whether ``generate`` needs integer class labels (sources then need a label).
    nominal_side:  the side of the images the published architecture makes; the service's cost cap
                   counts pixels with it when the job does not set a larger one.
    side_param:    a param that sets the generated side (e.g. unCLIP's ``image_size``), or None.
    """

    name: str
    generator: str
    params: ParamSpec = ParamSpec()
    summary: str = ""
    presets: tuple[str, ...] = ("tiny",)
    needs_labels: bool = False
    nominal_side: int = 256
    side_param: str | None = None

    def __post_init__(self) -> None:
        if ":" not in self.generator:
            raise ValueError(f"generator {self.name}: `generator` must be 'package.module:Class', got {self.generator!r}")
        if not isinstance(self.params, ParamSpec):
            object.__setattr__(self, "params", ParamSpec(self.params))
        if "tiny" not in self.presets:
            raise ValueError(f"generator {self.name}: declare a `tiny` random preset (tests and demos build it)")
        if self.side_param is not None and self.params.get(self.side_param) is None:
            raise ValueError(f"generator {self.name}: side_param {self.side_param!r} is not a declared param")

    def load_class(self) -> type[ViewGenerator]:
        """Import and return the generator class (this imports torch and the model's libraries)."""
        module_name, _, attr = self.generator.partition(":")
        cls = importlib.import_module(module_name)
        for part in attr.split("."):
            cls = getattr(cls, part)
        return cls

    def check_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check params strictly against the declaration (ParamError names the param and what it expects)."""
        return self.params.check(values, model=self.name)

    def output_side(self, params: Mapping[str, Any]) -> int:
        """Side of the images this model makes with `params` (the declared side param, else nominal_side)."""
        if self.side_param is not None and isinstance(params.get(self.side_param), int):
            return int(params[self.side_param])
        return int(self.nominal_side)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return {"name": self.name, "generator": self.generator, "summary": self.summary, "presets": list(self.presets),
                "needs_labels": self.needs_labels, "nominal_side": self.nominal_side,
                "params": [p.to_dict() for p in self.params]}


__all__ = ["GeneratorDeclaration", "Param", "ParamError", "ParamSpec"]
