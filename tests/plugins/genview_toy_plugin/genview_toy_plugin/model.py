"""The toy generator: a linear encoder of an 8x8 thumbnail, a linear decoder of (embedding + sigma x noise).

Everything a real generator does, at toy size: batched rows, noise per row from that row's seed only,
strict loading of its own on-disk format (config.json + model.safetensors), a random `tiny` preset,
its FLOPs per view.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from genview.generator import (
    ViewGenerator,
    WeightsInfo,
    WeightsNotFoundError,
    read_random_marker,
    sha256_files,
    torch_generator,
    write_random_marker,
)
from genview_toy_plugin import DECLARATION

THUMB = 8  # the encoder sees an 8x8 thumbnail
SIDE = 16  # views are 16x16
DIM = 16  # embedding width


class ToyGenerator(ViewGenerator):
    """embed: thumbnail -> linear -> unit vector; generate: sigmoid(linear(embedding + sigma x z))."""

    declaration = DECLARATION

    def __init__(self, encoder: torch.Tensor, decoder: torch.Tensor, weights: WeightsInfo,
                 device: str | torch.device = "cpu", **params: Any):
        self._settings = {**DECLARATION.params.defaults(), **self.check_params(params)}
        self._device = torch.device(device)
        self.encoder = encoder.to(self._device)  # [3*THUMB*THUMB, DIM]
        self.decoder = decoder.to(self._device)  # [DIM, 3*SIDE*SIDE]
        self.weights = weights

    @classmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cpu", **params: Any) -> "ToyGenerator":
        """Load config.json + model.safetensors from folder `path`; strict."""
        folder = Path(path)
        files = [folder / "config.json", folder / "model.safetensors"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise WeightsNotFoundError(f"--weights {path}: not a toy model folder (missing {', '.join(missing)}); "
                                       "make one with `genview models init toy --preset tiny --out DIR`")
        config = json.loads(files[0].read_text())
        if config.get("model") != DECLARATION.name:
            raise WeightsNotFoundError(f"--weights {path}: config.json is for {config.get('model')!r}, not toy")
        tensors = load_file(str(files[1]))
        marker = read_random_marker(folder)
        weights = WeightsInfo(id=str(path), sha256=sha256_files(files), random_init=marker is not None,
                              preset=marker.get("preset") if marker else None)
        return cls(tensors["encoder"], tensors["decoder"], weights, device=device, **params)

    @classmethod
    def from_preset(cls, preset: str, seed: int = 0, device: str | torch.device = "cpu", **params: Any) -> "ToyGenerator":
        """Random weights of the `tiny` preset, a function of `seed`."""
        if preset not in DECLARATION.presets:
            raise ValueError(f"toy has presets {', '.join(DECLARATION.presets)}; got {preset!r}")
        g = torch_generator(seed)
        encoder = torch.randn(3 * THUMB * THUMB, DIM, generator=g) / (3 * THUMB * THUMB) ** 0.5
        decoder = torch.randn(DIM, 3 * SIDE * SIDE, generator=g) * 2.0
        weights = WeightsInfo(id=f"preset:{preset}", sha256=f"toy-{preset}-{seed}", random_init=True, preset=preset)
        model = cls(encoder, decoder, weights, device=device, **params)
        model._preset = (preset, seed)
        return model

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write config.json + model.safetensors (and the random marker for a preset)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"model": DECLARATION.name, "dim": DIM, "side": SIDE}) + "\n")
        save_file({"encoder": self.encoder.cpu().contiguous(), "decoder": self.decoder.cpu().contiguous()},
                  str(folder / "model.safetensors"))
        if getattr(self, "_preset", None):
            write_random_marker(folder, DECLARATION.name, *self._preset)

    @classmethod
    def view_cost(cls, preset: str, encoder_calls: float, params: dict[str, Any]):
        """One matmul to embed, one to decode, counted by genview's FLOP counter."""
        from genview.generator.cost import CostReport, StageCost, count_flops

        meta = torch.device("meta")
        encode = count_flops(torch.matmul, torch.empty(1, 3 * THUMB * THUMB, device=meta), torch.empty(3 * THUMB * THUMB, DIM, device=meta))
        decode = count_flops(torch.matmul, torch.empty(1, DIM, device=meta), torch.empty(DIM, 3 * SIDE * SIDE, device=meta))
        stages = (StageCost("encoder", 3 * THUMB * THUMB * DIM, encode, encoder_calls, "linear, once per source + once per view"),
                  StageCost("decoder", DIM * 3 * SIDE * SIDE, decode, 1.0, "linear, one pass per view"))
        return CostReport(DECLARATION.name, preset, {**DECLARATION.params.defaults(), **params, "image_size": SIDE}, stages)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._settings)

    @property
    def image_size(self) -> int:
        return SIDE

    @property
    def device(self) -> torch.device:
        return self._device

    def embed(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """Unit embeddings [N, DIM] (float32, CPU) of PIL images of any size (decoded sources) or uint8 [N, 3, H, W] (views)."""
        if isinstance(images, torch.Tensor):
            thumbs = F.adaptive_avg_pool2d(images.to(self._device).float() / 255.0, THUMB)
        elif len(images):
            # Sources come decoded at their own sizes: each is pooled to the thumbnail on its own.
            pixels = [torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1) for image in images]
            thumbs = torch.cat([F.adaptive_avg_pool2d(p[None].to(self._device).float() / 255.0, THUMB) for p in pixels])
        else:
            return torch.zeros(0, DIM)
        return F.normalize(thumbs.flatten(1) @ self.encoder, dim=1).cpu()

    def generate(self, embeddings: torch.Tensor, seeds: Sequence[int], labels: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 views [B, 3, 16, 16]; row i from embeddings[i] and noise drawn from seeds[i] alone."""
        if len(seeds) != embeddings.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for {embeddings.shape[0]} embeddings")
        noise = torch.cat([torch.randn(1, DIM, generator=torch_generator(s)) for s in seeds]) if len(seeds) else torch.zeros(0, DIM)
        latent = embeddings.float().cpu() + float(self._settings["sigma"]) * noise
        images = torch.sigmoid(latent.to(self._device) @ self.decoder).view(-1, 3, SIDE, SIDE)
        if self._settings["invert"]:
            images = 1.0 - images
        return (images * 255).round().to(torch.uint8).cpu()
