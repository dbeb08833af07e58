"""Models: condition encoders and view generators, real checkpoint loaders, tiny random presets.

The public generator interface (docs/generators.md, "Write your own generator"):
`GeneratorDeclaration` + `Param` / `ParamSpec` (torch-free: name, class, typed params, presets) and
`ViewGenerator` (the class that runs), `torch_generator` / `view_seed` (per-row noise),
`write_random_marker` (random presets), `register` / entry points in the group ``genview.generators``.

Exports resolve lazily (PEP 562): the registry's model names are needed where torch is not (the job
service validating a spec), the generators themselves only where a model runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genview._lazy import lazy_exports

_EXPORTS = {
    "ENTRY_POINT_GROUP": "genview.generator.registry",
    "GeneratorDeclaration": "genview.generator.declaration",
    "Param": "genview.generator.params",
    "ParamError": "genview.generator.params",
    "ParamSpec": "genview.generator.params",
    "get_declaration": "genview.generator.registry",
    "model_entries": "genview.generator.registry",
    "read_random_marker": "genview.generator.base",
    "sha256_files": "genview.generator.base",
    "write_random_marker": "genview.generator.base",
    "RANDOM_WEIGHTS_MARKER": "genview.generator.base",
    "ViewGenerator": "genview.generator.base",
    "WeightsInfo": "genview.generator.base",
    "WeightsNotFoundError": "genview.generator.base",
    "get_generator_class": "genview.generator.registry",
    "model_names": "genview.generator.registry",
    "register": "genview.generator.registry",
    "torch_generator": "genview.generator.seeding",
    "view_seed": "genview.generator.seeding",
}

if TYPE_CHECKING:
    from genview.generator.base import (
        RANDOM_WEIGHTS_MARKER,
        ViewGenerator,
        WeightsInfo,
        WeightsNotFoundError,
        read_random_marker,
        sha256_files,
        write_random_marker,
    )
    from genview.generator.declaration import GeneratorDeclaration
    from genview.generator.params import Param, ParamError, ParamSpec
    from genview.generator.registry import (
        ENTRY_POINT_GROUP,
        get_declaration,
        get_generator_class,
        model_entries,
        model_names,
        register,
    )
    from genview.generator.seeding import torch_generator, view_seed


__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
