"""The independent scorer: an image encoder that did NOT condition the generator (open_clip or DINO).

The similarity a store records is measured with the generator's own condition encoder, which
flatters every model (the generator was trained to match it). A second encoder gives a fair,
comparable semantic-consistency score: the cosine between a source and its view in its space.

``openclip:ARCH`` with ``--scorer-weights FILE`` loads an open_clip checkpoint file
(``open_clip.create_model(ARCH, pretrained=FILE)``, strict); a folder holding
``open_clip_config.json`` + weights (open_clip's own ``local-dir:`` layout, which `genview models
init openclip` writes) is loaded through ``local-dir:``. ``dino`` loads an official DINO ViT
checkpoint (or a saved genview encoder folder) through genview.generator.encoders.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from genview.generator.base import WeightsInfo, WeightsNotFoundError, read_random_marker, sha256_files, write_random_marker

#: open_clip's config file in a local-dir checkpoint folder.
OPENCLIP_CONFIG = "open_clip_config.json"
#: Weights file name `models init openclip` writes (one of the names open_clip looks for in a folder).
OPENCLIP_WEIGHTS = "open_clip_pytorch_model.bin"
#: A toy ViT CLIP in open_clip's config schema: same code path and key scheme as ViT-B-32, CPU-sized.
TINY_OPENCLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}
SCORER_KINDS = ("openclip", "dino")


def init_random_openclip(out: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny randomly initialised open_clip model in open_clip's local-dir layout, marked random."""
    import open_clip

    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / OPENCLIP_CONFIG).write_text(json.dumps(TINY_OPENCLIP_CONFIG, indent=2) + "\n")
    torch.manual_seed(seed)
    # open_clip logs that the folder has no weights yet: that is the point of a random preset.
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(f"local-dir:{directory}", pretrained=None)
    finally:
        logger.setLevel(level)
    torch.save(model.state_dict(), directory / OPENCLIP_WEIGHTS)
    write_random_marker(directory, "openclip", "tiny", seed)
    return directory


def _pil(image: torch.Tensor) -> Image.Image:
    """uint8 [3, H, W] tensor -> RGB PIL image."""
    return Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy()))


class IndependentScorer:
    """An encoder that did not condition the generator: images -> L2-normalised embeddings."""

    def __init__(self, spec: str, weights: str | os.PathLike | None, device: str | torch.device = "cpu", batch_size: int = 64):
        kind, _, arch = str(spec).partition(":")
        if kind not in SCORER_KINDS:
            raise ValueError(f"--scorer {spec!r}: unknown kind {kind!r}; use openclip:ARCH (e.g. openclip:ViT-B-32) or dino")
        if weights is None:
            raise WeightsNotFoundError(
                f"--scorer {spec} needs --scorer-weights FILE (nothing is downloaded); for a random test model run "
                f"`genview models init {kind} --preset tiny --out DIR` and pass DIR"
            )
        path = Path(weights)
        if not path.exists():
            raise WeightsNotFoundError(f"--scorer-weights {path} does not exist")
        self.spec = str(spec)
        self.device = torch.device(device)
        self.batch_size = batch_size
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        marker = read_random_marker(path if path.is_dir() else path.parent)
        self.weights = WeightsInfo(
            id=str(path), sha256=sha256_files(files), random_init=marker is not None,
            preset=marker.get("preset") if marker else None,
        )
        if kind == "openclip":
            self._load_openclip(arch, path)
        else:
            self._load_dino(path)

    def _load_openclip(self, arch: str, path: Path) -> None:
        import open_clip

        if path.is_dir():
            if not (path / OPENCLIP_CONFIG).is_file():
                raise WeightsNotFoundError(f"--scorer-weights {path}: folder has no {OPENCLIP_CONFIG} (open_clip's local-dir layout)")
            name, pretrained = f"local-dir:{path}", None
        else:
            if not arch:
                raise ValueError("--scorer openclip needs an architecture with a weights file, e.g. openclip:ViT-B-32")
            name, pretrained = arch, str(path)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=self.device)
        except RuntimeError as exc:  # strict load: wrong architecture for these weights
            raise ValueError(f"--scorer openclip:{arch} --scorer-weights {path}: cannot load: {exc}") from None
        model.eval()
        self._preprocess = preprocess

        def encode(images: Sequence[torch.Tensor]) -> torch.Tensor:
            batch = torch.stack([preprocess(_pil(img)) for img in images]).to(self.device)
            return model.encode_image(batch).float()

        self._encode = encode

    def _load_dino(self, path: Path) -> None:
        from genview.generator.encoders import load_condition_encoder

        encoder = load_condition_encoder(path if path.is_dir() else f"dino:{path}").to(self.device)

        def encode(images: Sequence[torch.Tensor]) -> torch.Tensor:
            return encoder.embed([_pil(img) for img in images])

        self._encode = encode

    @torch.no_grad()
    def embed(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return unit-norm float32 [N, E] embeddings of uint8 [3, H, W] images."""
        parts = [self._encode(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return torch.nn.functional.normalize(torch.cat(parts).cpu(), dim=1)
