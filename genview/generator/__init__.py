"""Models: condition encoders and view generators, real checkpoint loaders, tiny random presets.

Exports resolve lazily (PEP 562): the registry's model names are needed where torch is not (the job
service validating a spec), the generators themselves only where a model runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
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
    from genview.generator.base import RANDOM_WEIGHTS_MARKER, ViewGenerator, WeightsInfo, WeightsNotFoundError
    from genview.generator.registry import get_generator_class, model_names, register
    from genview.generator.seeding import torch_generator, view_seed


def __getattr__(name: str) -> Any:
    """Import an exported name on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'genview.generator' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
