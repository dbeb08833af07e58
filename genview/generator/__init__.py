"""Models: condition encoders and view generators, real checkpoint loaders, tiny random presets.

Exports resolve lazily (PEP 562): the registry's model names are needed where torch is not (the job
service validating a spec), the generators themselves only where a model runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genview._lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
