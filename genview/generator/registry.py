"""One registry from model name to generator class; classes are imported only when asked for."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry itself must not import torch (the job service lists models without it)
    from genview.generator.base import ViewGenerator

#: name -> "module:Class". Lazy so that `genview --help` does not import diffusers.
_MODELS: dict[str, str] = {
    "icgan": "genview.generator.icgan:ICGANGenerator",
    "cc-icgan": "genview.generator.icgan:CCICGANGenerator",
    "unclip": "genview.generator.unclip:UnCLIPGenerator",
    "eldm": "genview.generator.eldm:ELDMGenerator",
}


def model_names() -> list[str]:
    """Return the registered model names, sorted."""
    return sorted(_MODELS)


def register(name: str, target: str) -> None:
    """Register a generator class by import path ``module:Class`` under ``name``."""
    _MODELS[name] = target


def get_generator_class(name: str) -> type[ViewGenerator]:
    """Return the generator class registered under ``name``; a clear error lists the known names."""
    try:
        target = _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(model_names())}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)
