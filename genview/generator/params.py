"""Typed generator params: one declaration per param, read by the CLI, the job service and `models info`.

A generator declares each setting it accepts as a `Param` (name, type, default, bounds, help). The same
declaration is used where a value comes in:

* the CLI's ``--param NAME=VALUE`` parses the text by the declared type (`Param.parse_text`);
* the job service checks a JSON value strictly (`Param.check`): no "3" for an int, no ``true`` for a
  float, bounds from the declaration; the error names the param and what it expects;
* ``genview models info MODEL`` prints the table (`describe_params`).

This module imports neither torch nor any model: the job service validates specs without them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable, Literal, Mapping

#: The kinds of value a param may hold. ``path`` is a file or folder the worker opens: the job service
#: resolves it under the caller's read roots like any other path.
ParamType = Literal["int", "float", "bool", "str", "choice", "path"]
PARAM_TYPES: tuple[str, ...] = ("int", "float", "bool", "str", "choice", "path")

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NULL = ("null", "none")


class ParamError(ValueError):
    """A param value of the wrong type, out of its bounds, or not declared; the message names the param."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One setting a generator accepts.

    ``default`` is what the generator uses when the param is not given; ``None`` with ``nullable``
    means "resolved by the model" (e.g. unCLIP's image_size: the UNet's native size). ``minimum`` /
    ``maximum`` bound int and float values (inclusive); ``choices`` lists a choice param's values.
    """

    name: str
    type: ParamType
    default: Any = None
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"param {self.name}: type must be one of {', '.join(PARAM_TYPES)}, got {self.type!r}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"param {self.name}: a choice param needs its choices")
        if self.default is None and not self.nullable:
            object.__setattr__(self, "nullable", True)  # a None default is always an accepted value
        if self.default is not None:
            self.check(self.default)  # a declaration whose default breaks its own bounds is a bug

    # ---- what a value must be ----------------------------------------------------------------------

    def expected(self) -> str:
        """Describe the accepted values, e.g. 'a number (float) >= 0' or 'one of ddim, euler'."""
        if self.type == "int":
            text = "an integer"
        elif self.type == "float":
            text = "a number (float)"
        elif self.type == "bool":
            text = "true or false"
        elif self.type == "choice":
            text = "one of " + ", ".join(self.choices)
        elif self.type == "path":
            text = "a path (string)"
        else:
            text = "a string"
        if self.minimum is not None and self.maximum is not None:
            text += f" in [{_num(self.minimum)}, {_num(self.maximum)}]"
        elif self.minimum is not None:
            text += f" >= {_num(self.minimum)}"
        elif self.maximum is not None:
            text += f" <= {_num(self.maximum)}"
        if self.nullable:
            text += ", or null"
        return text

    def check(self, value: Any) -> Any:
        """Return `value` if it is exactly of this param's type and within bounds; else raise ParamError.

        Strict: JSON's types must match (no "3" for an int, no true for a number); an integer is a valid
        float. Floats must be finite.
        """
        if value is None:
            if self.nullable:
                return None
            raise self._wrong(value)
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self._wrong(value)
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise self._wrong(value)
            value = float(value)
        elif self.type == "bool":
            if not isinstance(value, bool):
                raise self._wrong(value)
        elif self.type == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise self._wrong(value)
        elif not isinstance(value, str) or (self.type == "path" and not value):
            raise self._wrong(value)
        if self.type in ("int", "float"):
            if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
                raise self._wrong(value)
        return value

    def parse_text(self, text: str) -> Any:
        """Parse a command-line value by the declared type (``--param NAME=VALUE``), then `check` it."""
        raw = text.strip()
        if self.nullable and raw.lower() in _NULL:
            return None
        value: Any = raw
        try:
            if self.type == "int":
                value = int(raw)
            elif self.type == "float":
                value = float(raw)
            elif self.type == "bool":
                if raw.lower() not in _TRUE + _FALSE:
                    raise ValueError(raw)
                value = raw.lower() in _TRUE
            elif len(raw) >= 2 and raw[0] == raw[-1] == '"':
                value = json.loads(raw)  # a JSON string literal (how the job service writes a worker's --param)
        except ValueError:
            raise self._wrong(text) from None
        return self.check(value)

    def _wrong(self, value: Any) -> ParamError:
        shown = repr(value) if not isinstance(value, bool) else str(value).lower()
        return ParamError(f"params.{self.name}: expected {self.expected()}, got {shown}")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form (as `models info --json` and GET /v1/models show it)."""
        out = {"name": self.name, "type": self.type, "default": self.default, "help": self.help,
               "nullable": self.nullable, "expected": self.expected()}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices:
            out["choices"] = list(self.choices)
        return out


def _num(value: float) -> str:
    """Format a bound without a trailing .0."""
    return f"{value:g}"


class ParamSpec(tuple):
    """The params one generator accepts: a tuple of `Param` with lookup by name and whole-dict checks."""

    def __new__(cls, params: Iterable[Param] = ()) -> "ParamSpec":
        items = tuple(params)
        names = [p.name for p in items]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"params declared twice: {', '.join(duplicates)}")
        return super().__new__(cls, items)

    @property
    def names(self) -> list[str]:
        """The declared names, in declaration order."""
        return [p.name for p in self]

    def get(self, name: str) -> Param | None:
        """Return the param called `name`, or None."""
        for param in self:
            if param.name == name:
                return param
        return None

    def declared(self, name: str, model: str = "this model") -> Param:
        """Return the param called `name`; ParamError listing the known names when it is not declared."""
        param = self.get(name)
        if param is None:
            raise ParamError(f"params.{name}: unknown {model} param; known: {', '.join(self.names) or 'none'}")
        return param

    def path_names(self) -> list[str]:
        """Names of the params that are paths (checked against the caller's read roots)."""
        return sorted(p.name for p in self if p.type == "path")

    def defaults(self) -> dict[str, Any]:
        """Each param's declared default."""
        return {p.name: p.default for p in self}

    def check(self, values: Mapping[str, Any], model: str = "this model") -> dict[str, Any]:
        """Return `values` checked strictly against the declarations; ParamError names the first bad one."""
        return {name: self.declared(name, model).check(value) for name, value in values.items()}

    def parse_texts(self, pairs: Iterable[tuple[str, str]], model: str = "this model") -> dict[str, Any]:
        """Parse command-line NAME=VALUE pairs by each param's declared type."""
        return {name: self.declared(name, model).parse_text(text) for name, text in pairs}


def describe_params(params: ParamSpec) -> str:
    """Return the plain-text table `genview models info` prints: name, type, default, accepted values, help."""
    if not params:
        return "params: none\n"
    rows = [(p.name, p.type, "null" if p.default is None else str(p.default).lower() if isinstance(p.default, bool)
             else str(p.default), p.expected(), p.help) for p in params]
    widths = [max(len(r[i]) for r in rows + [("param", "type", "default", "accepts", "")]) for i in range(4)]
    head = ("param", "type", "default", "accepts")
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  help"]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return "\n".join(lines) + "\n"


def markdown_params(params: ParamSpec) -> str:
    """Return a markdown table of the params (docs/generators.md is checked against it)."""
    lines = ["| param | type | default | accepts | what it does |", "|---|---|---|---|---|"]
    for p in params:
        default = "null" if p.default is None else str(p.default).lower() if isinstance(p.default, bool) else str(p.default)
        lines.append(f"| `{p.name}` | {p.type} | `{default}` | {p.expected()} | {p.help} |")
    return "\n".join(lines) + "\n"
