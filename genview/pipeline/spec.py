"""The generation job spec: what the CLI, the HTTP API and the Python API all build."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from genview.generator.registry import get_declaration
from genview.recipes import apply_recipe, get_recipe, recipe_names

def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: The most read/decode/encode threads a worker starts unless told otherwise.
MAX_DEFAULT_IO_THREADS = 4


def default_io_threads() -> int:
    """Default read/decode/encode threads per worker: one core left for the device, collector and writer, at most 4.

    More threads than cores lose to GIL contention: on this 2-core machine bench/bench_engine.py
    sustained the most views/s with 1 io thread and the fewest with 4 (README, "The generation engine").
    """
    return max(1, min(MAX_DEFAULT_IO_THREADS, usable_cpus() - 1))


#: The largest job seed: seeds are int64 in the manifest (and 63-bit per view, genview.generator.seeding).
MAX_SEED = 2**63 - 1

#: Spec fields that decide a store's content; a rerun into an existing store must agree on them.
IDENTITY_FIELDS = (
    "source", "model", "k", "seed", "shard_size", "view_size", "format", "quality", "best_of",
    "interpolate", "alphas", "pair_across", "interpolation", "store_embeddings", "source_copy", "source_size",
)


class GenerateSpec(BaseModel):
    """Everything needed to (re)run a generation job; JSON-able and validated."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    source: str = Field(description="image folder (ImageFolder layout), list file (.txt/.csv/.parquet) or URL")
    recipe: str | None = Field(
        default=None,
        description="named paper recipe (`genview recipes list`): fills model, k, params, ... that are not given",
    )
    out: str = Field(description="store folder or URL")
    model: str = Field(description="generator name, e.g. icgan")
    weights: str | None = Field(default=None, description="checkpoint directory or hub id")
    encoder_weights: str | None = Field(default=None, description="condition-encoder checkpoint, if not beside the weights")
    k: int = Field(default=10, ge=1, le=1000, description="views per source")
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="job seed, 0..2**63-1 (an int64, as the manifest stores seeds); view seeds derive from it")
    shard_size: int = Field(default=1000, ge=1, le=1_000_000, description="sources per shard")
    batch_size: int = Field(default=32, ge=1, le=4096, description="generator batch (source x view rows)")
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N")
    view_size: int | None = Field(default=None, ge=8, le=4096, description="resize stored views to this side")
    format: Literal["jpg", "webp", "png"] = "jpg"
    quality: int = Field(default=95, ge=1, le=100)
    best_of: int = Field(default=1, ge=1, le=64, description="candidates per view; the most similar is kept")
    params: dict[str, Any] = Field(default_factory=dict, description="model settings, e.g. truncation")
    store_embeddings: bool = Field(default=False, description="keep each source's condition embedding as KEY.emb.npy")
    source_copy: Literal["jpg", "png", "original", "none"] = Field(
        default="jpg",
        description="how each source is kept in its sample: jpg/png = as the generator saw it (RGB, EXIF applied, "
        "alpha over white) as KEY.src.jpg/png; original = the file's own bytes and extension; none = not kept",
    )
    source_size: int | None = Field(
        default=None, ge=8, le=16384, description="shrink the stored source copy to this short side (jpg/png copies only)"
    )
    interpolate: bool = Field(default=False, description="condition views on a mix of the source and a secondary source")
    alphas: list[float] | None = Field(
        default=None,
        description="Gen-SIS alpha per view, cycled over the K views: the weight of the source (primary) embedding; "
        "the secondary gets 1 - alpha",
    )
    pair_across: str | None = Field(default=None, description="take the secondary from another value of this sources column")
    # Gen-SIS interpolates linearly (its supplement, 9.4); slerp is an option.
    interpolation: Literal["slerp", "lerp"] = "lerp"
    io_threads: int = Field(default_factory=default_io_threads, ge=1, le=64,
                            description="read/decode/encode threads per worker; default: usable CPUs - 1, at most 4")
    exact: bool = Field(default=False, description="run the model row by row: byte-identical CPU views whatever the batch")
    threads: int | None = Field(default=None, ge=1, le=256,
                                description="torch intra-op threads per worker; default: measured best (see cpu_threads)")
    # Where the shards run (not identity: any backend makes the same views).
    ray_address: str | None = Field(default=None, description="Ray cluster address (auto, HOST:PORT, ray://...)")
    workers: int | None = Field(default=None, ge=1, le=4096, description="Ray actors; default one per GPU")

    @model_validator(mode="before")
    @classmethod
    def _resolve_recipe(cls, data: Any) -> Any:
        # Fill in the recipe's values before field validation, so a recipe resolves to an ordinary spec.
        # An unknown name is left to the `recipe` field validator (its error then names the field).
        if isinstance(data, dict) and data.get("recipe") in recipe_names():
            return apply_recipe(data)
        return data

    @field_validator("recipe")
    @classmethod
    def _known_recipe(cls, value: str | None) -> str | None:
        if value is not None:
            get_recipe(value)  # ValueError listing the known recipes
        return value

    @field_validator("alphas")
    @classmethod
    def _alphas_in_range(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            if not value:
                raise ValueError("give at least one alpha")
            bad = [a for a in value if not 0.0 <= a <= 1.0]
            if bad:
                raise ValueError(f"alphas must lie in [0, 1], got {bad}")
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        get_declaration(value)  # ValueError listing the known models (a package.module:Class is imported)
        return value

    @field_validator("params")
    @classmethod
    def _declared_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # One declaration per model (genview.generator.builtin, or the plugin's): names, types, bounds.
        # Strict: "3" is not an int, true is not a number. Ints given for a float param become floats.
        # (`model` is validated first: fields run in order. When it failed, there is nothing to check against.)
        model = info.data.get("model")
        return get_declaration(model).check_params(value) if model else value


    @model_validator(mode="after")
    def _source_size_needs_a_decoded_copy(self) -> "GenerateSpec":
        if self.source_size is not None and self.source_copy not in ("jpg", "png"):
            raise ValueError(f"source_size applies to source_copy jpg or png, not {self.source_copy!r}")
        return self

    @model_validator(mode="after")
    def _interpolation_options_need_interpolate(self) -> "GenerateSpec":
        if not self.interpolate and (self.alphas is not None or self.pair_across is not None):
            raise ValueError("alphas and pair_across only apply with interpolate (--interpolate)")
        return self


def resolve_device(device: str) -> str:
    """Turn 'auto' into cuda when a GPU is visible, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
