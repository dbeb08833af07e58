"""The interface every view generator implements (IC-GAN, CC-IC-GAN, unCLIP, E-LDM)."""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from PIL import Image

#: Written by `genview models init` beside randomly initialised weights. Real checkpoints never
#: carry it, so its presence is what marks a model (and every store made with it) as random.
RANDOM_WEIGHTS_MARKER = "genview_random_weights.json"


class WeightsNotFoundError(FileNotFoundError):
    """Raised when a model's weights are not where the user pointed; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from; recorded in the store's genview.json."""

    id: str  # path or hub id the user gave
    sha256: str  # digest over the weight files (sorted by name)
    random_init: bool  # True for `genview models init` presets: the views are NOT from a trained model
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return dataclasses.asdict(self)


def sha256_files(paths: Sequence[str | os.PathLike]) -> str:
    """Return one sha256 over the given files' names and bytes (sorted by name), streamed in 1 MiB blocks."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_random_marker(directory: str | os.PathLike) -> dict[str, Any] | None:
    """Return the random-weights marker of a weights directory, or None for real weights."""
    path = Path(directory) / RANDOM_WEIGHTS_MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_random_marker(directory: str | os.PathLike, model: str, preset: str, seed: int) -> None:
    """Mark a weights directory as randomly initialised (written by `genview models init`)."""
    info = {
        "model": model,
        "preset": preset,
        "seed": seed,
        "warning": "randomly initialised weights: views made with them are not from a trained model",
    }
    (Path(directory) / RANDOM_WEIGHTS_MARKER).write_text(json.dumps(info, indent=2) + "\n")


class ViewGenerator(abc.ABC):
    """A conditional generative model that makes views of a source image from its embedding.

    The pipeline uses exactly this surface:
      1. ``embed(sources)`` once per source -> condition embeddings ``[N, D]`` in the form the model is
         conditioned on (unit vectors for IC-GAN; raw CLIP vectors for unCLIP): compare them by cosine;
      2. ``generate(embeddings, labels, seeds)`` for a batch of (source x view) rows -> uint8 images;
      3. ``embed(views)`` again to score each view's similarity to its source.
    Noise for row i is drawn from ``torch_generator(seeds[i])`` alone, so a view is identical
    whatever batch it falls in.
    """

    #: Registry name (``icgan``, ``cc-icgan``, ``unclip``, ``eldm``).
    model_name: ClassVar[str]
    #: Whether ``generate`` needs integer class labels (CC-IC-GAN).
    needs_labels: ClassVar[bool] = False

    weights: WeightsInfo

    @classmethod
    @abc.abstractmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cpu", **params: Any) -> "ViewGenerator":
        """Load real (or `models init`) weights from their published on-disk format; strict."""

    @abc.abstractmethod
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the weights in the published on-disk format that `from_pretrained` reads."""

    @classmethod
    @abc.abstractmethod
    def from_preset(cls, preset: str, seed: int = 0, device: str | torch.device = "cpu", **params: Any) -> "ViewGenerator":
        """Build a randomly initialised model of a named preset (``tiny`` or ``full``)."""

    @property
    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """Generation settings in force (truncation, steps, guidance, ...), JSON-able, recorded in the spec."""

    @property
    @abc.abstractmethod
    def image_size(self) -> int:
        """Side of the square images `generate` returns."""

    @property
    def input_side(self) -> int:
        """Side the condition encoder resizes a source to (IC-GAN: its resolution); decoding keeps 2x this."""
        return self.image_size

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        """Device the model runs on."""

    @abc.abstractmethod
    def embed(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """Return condition embeddings [N, D] (float32, CPU) of RGB PIL images or a uint8 [N,3,H,W] tensor."""

    @abc.abstractmethod
    def generate(
        self,
        embeddings: torch.Tensor,
        seeds: Sequence[int],
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return uint8 images [B, 3, S, S] on CPU, row i conditioned on embeddings[i] with noise from seeds[i]."""

    def embed_on_device(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """Like `embed`, but may leave the embeddings on the model's device (no host sync); default: `embed`."""
        return self.embed(images)

    def generate_on_device(
        self,
        embeddings: torch.Tensor,
        seeds: Sequence[int],
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Like `generate`, but may leave the uint8 images on the model's device; default: `generate`."""
        return self.generate(embeddings, seeds, labels=labels)

    def device_event(self) -> Any | None:
        """Record an event on the device's queue (a timed `torch.cuda.Event` on CUDA); None where forwards are synchronous.

        The engine records one before and one after each batch. When events exist, launches are taken
        to be asynchronous: the device thread runs ahead and the collector waits on the end event.
        Anything with `synchronize()` and `elapsed_time(end)` in milliseconds will do (see
        `genview.pipeline.timeline` for a simulated device).
        """
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return None

    def describe(self) -> dict[str, Any]:
        """Return what the store's spec records about this model."""
        return {"model": self.model_name, "weights": self.weights.to_dict(), "params": self.params}
