"""FID's reference images: each source preprocessed as the generator saw it, at the size of its views.

DA IC-GAN (seed 004, §4.1) computes per-class FID "by using the training samples of each class both
as the reference and as the conditioning to generate the same number of synthetic images"; the
training samples there are the generator's own inputs: centre-cropped squares at its resolution.
Feeding Inception the whole source at its own aspect ratio instead measures the crop and the
stretch as if they were generation errors (a generator that returns the centre crop would not
score 0), so the default reference is the centre crop, resized to the view's size.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

#: `genview quality --fid-reference` values: the generator's view of each source, or the whole source (old behaviour).
FID_REFERENCES = ("centre-crop", "whole")
DEFAULT_FID_REFERENCE = "centre-crop"


def centre_crop_resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Return the largest centred box of uint8 [3, H, W] `image` with the view's aspect ratio, resized to (height, width).

    The resize is PIL's antialiased bicubic, the kernel genview resizes views with (pipeline/encode.py).
    """
    pil = Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy()))
    fitted = ImageOps.fit(pil, (int(width), int(height)), Image.BICUBIC, centering=(0.5, 0.5))
    return torch.from_numpy(np.asarray(fitted, dtype=np.uint8).copy()).permute(2, 0, 1)


def reference_images(sources: list[torch.Tensor], view_sizes: list[tuple[int, int]], mode: str) -> list[torch.Tensor]:
    """Return the FID reference image of each source: centre crop at its views' (height, width), or the whole source."""
    if mode not in FID_REFERENCES:
        raise ValueError(f"--fid-reference must be one of {', '.join(FID_REFERENCES)}, got {mode!r}")
    if mode == "whole":
        return list(sources)
    return [centre_crop_resize(src, h, w) for src, (h, w) in zip(sources, view_sizes)]
