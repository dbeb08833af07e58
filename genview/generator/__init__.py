"""Models: condition encoders and view generators, real checkpoint loaders, tiny random presets."""

from genview.generator.base import (
    RANDOM_WEIGHTS_MARKER,
    ViewGenerator,
    WeightsInfo,
    WeightsNotFoundError,
)
from genview.generator.registry import get_generator_class, model_names, register
from genview.generator.seeding import torch_generator, view_seed

__all__ = [
    "RANDOM_WEIGHTS_MARKER",
    "ViewGenerator",
    "WeightsInfo",
    "WeightsNotFoundError",
    "get_generator_class",
    "model_names",
    "register",
    "torch_generator",
    "view_seed",
]
