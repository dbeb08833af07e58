"""The interface every view generator implements: the core four, sd-image-variations and any plugin.

A generator is two things:

1. a torch-free `GeneratorDeclaration` (`genview.generator.declaration`): its name, its class's import
   path, its typed params with defaults and bounds, its random presets; the CLI, the job service and
   `genview models info` read only this;
2. a `ViewGenerator` subclass (below) that points back at it (``declaration = MY_DECLARATION``) and
   does the work.

What the engine (`genview.pipeline.engine`) does with a generator, per shard:

* **sources**: it decodes a batch of source rows (RGB, EXIF applied) and calls ``embed_on_device``
  once per batch of sources -> condition embeddings ``[N, D]``;
* **views**: it builds rows (source x view x best-of candidate), each with its own 63-bit seed
  (`genview.generator.seeding.view_seed(job seed, source id, view, candidate)`) and its condition
  (the source's embedding, or a Gen-SIS interpolation of two), and calls
  ``generate_on_device(conditions [B, D], seeds [B], labels [B] | None)`` -> uint8 ``[B, 3, S, S]``.
  Row i's noise must come from ``torch_generator(seeds[i])`` alone, so a view is the same whatever
  batch, worker or rerun it falls in (pixels within one level between batch sizes; ``--exact`` runs
  rows one by one for byte identity);
* **scores**: it embeds the views again and keeps the cosine similarity to the condition;
* **device events**: ``device_event()`` is recorded before and after each batch. On an asynchronous
  device (CUDA) return an event: the device thread then runs ahead and the collector waits on the
  end event; ``None`` (CPU) means every call returned finished work.

Weights: ``from_pretrained(path, device, **params)`` loads the published on-disk format strictly
(`WeightsNotFoundError` naming ``--weights`` otherwise); ``from_preset("tiny", seed)`` builds random
weights and ``save_pretrained`` writes that same format, which `genview models init` marks random
(`write_random_marker`). ``view_cost`` counts parameters and FLOPs per view for `genview models info`.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import torch
from PIL import Image

if TYPE_CHECKING:
    from genview.generator.cost import CostReport
    from genview.generator.declaration import GeneratorDeclaration

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

    #: The torch-free declaration (name, params, presets) this class implements.
    declaration: ClassVar["GeneratorDeclaration"]
    #: Registry name (``icgan``, ``cc-icgan``, ``unclip``, ``eldm``, ...): the declaration's name.
    model_name: ClassVar[str]
    #: Whether ``generate`` needs integer class labels (CC-IC-GAN).
    needs_labels: ClassVar[bool] = False

    weights: WeightsInfo

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declaration = cls.__dict__.get("declaration")
        if declaration is not None:
            cls.model_name = declaration.name
            cls.needs_labels = declaration.needs_labels

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Check params strictly against the declaration; ParamError names the param and what it expects."""
        return cls.declaration.check_params(params)

    @classmethod
    def view_cost(cls, preset: str, encoder_calls: float, params: dict[str, Any]) -> "CostReport":
        """Parameters per stage and FLOPs per generated view at `preset` (built on the meta device).

        ``encoder_calls`` is how often the condition encoder runs per view (1/k for the source, plus 1
        to score the view). See `genview.generator.cost` for the helpers the built-ins use.
        """
        raise NotImplementedError(f"{cls.__name__} does not count its FLOPs (ViewGenerator.view_cost)")

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
        """Return condition embeddings [N, D] (float32, CPU) of RGB PIL images or a uint8 [N,3,H,W] tensor.

        The engine passes decoded sources as a list of PIL images of their own sizes (up to twice
        `input_side`), and generated views as one uint8 tensor on the model's device.
        """

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
