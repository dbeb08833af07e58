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


#: The params each model accepts (name -> kind), declared here without importing torch so that the job
#: service can check a spec before accepting it. Kind "path" names a file or folder the worker opens:
#: the service resolves it against the caller's read roots; "scalar" is any JSON number/string/bool/null.
#: tests/api/test_api_units.py keeps this in step with the generator classes.
_PARAMS: dict[str, dict[str, str]] = {
    **{name: {"truncation": "scalar", "truncation_mode": "scalar", "dtype": "scalar", "channels_last": "scalar",
              "tf32": "scalar", "compile": "scalar", "encoder_weights": "path"} for name in ("icgan", "cc-icgan")},
    "unclip": {name: "scalar" for name in (
        "noise_level", "guidance_scale", "num_inference_steps", "scheduler", "eta", "rescale_betas_zero_snr",
        "timestep_spacing", "source_crop", "image_size", "dtype", "compile")},
    "eldm": {name: "scalar" for name in (
        "steps", "guidance_preset", "guidance_scale", "scheduler", "eta", "normalize_embedding", "precision", "compile")},
}


def model_params(name: str) -> dict[str, str]:
    """Return the params model ``name`` accepts, name -> kind ("path" or "scalar"); empty if undeclared."""
    return dict(_PARAMS.get(name, {}))


def path_params(name: str) -> list[str]:
    """Return the params of model ``name`` that name a file or folder (checked against read roots)."""
    return sorted(param for param, kind in _PARAMS.get(name, {}).items() if kind == "path")


def model_names() -> list[str]:
    """Return the registered model names, sorted."""
    return sorted(_MODELS)


def register(name: str, target: str, params: dict[str, str] | None = None) -> None:
    """Register a generator class by import path ``module:Class`` under ``name``, with its params' kinds."""
    _MODELS[name] = target
    if params is not None:
        _PARAMS[name] = dict(params)


def get_generator_class(name: str) -> type[ViewGenerator]:
    """Return the generator class registered under ``name``; a clear error lists the known names."""
    try:
        target = _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(model_names())}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def weights_required(model: str) -> str:
    """The error for a job without weights (the CLI's flag check and the loader say the same)."""
    return (f"--weights is required for --model {model}: give the checkpoint directory "
            f"(see `genview models --help`), or make random test weights with "
            f"`genview models init {model} --preset tiny --out DIR`")
