"""Encode generated views (uint8 tensors) to JPEG/WebP/PNG bytes."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

#: --format value -> (Pillow format, file extension)
FORMATS = {"jpg": ("JPEG", "jpg"), "webp": ("WEBP", "webp"), "png": ("PNG", "png")}
#: --resize-filter value -> (PIL filter, torch interpolate mode); both antialiased when shrinking.
RESIZE_FILTERS = {"bicubic": (Image.BICUBIC, "bicubic"), "bilinear": (Image.BILINEAR, "bilinear")}


def encode_view(
    pixels: np.ndarray, fmt: str = "jpg", quality: int = 95, size: int | None = None, resize_filter: str = "bicubic"
) -> tuple[bytes, int, int]:
    """Encode an HxWx3 uint8 array, optionally resized to size x size; return (bytes, width, height)."""
    pil_format, _ = FORMATS[fmt]
    img = Image.fromarray(pixels, "RGB")
    if size and img.size != (size, size):
        img = img.resize((size, size), RESIZE_FILTERS[resize_filter][0])
    buffer = io.BytesIO()
    if pil_format == "PNG":
        img.save(buffer, format="PNG", optimize=False)
    else:
        img.save(buffer, format=pil_format, quality=quality)
    return buffer.getvalue(), img.width, img.height


def resize_views(images: torch.Tensor, size: int, resize_filter: str = "bicubic") -> torch.Tensor:
    """Resize uint8 views [N, 3, S, S] to size x size on their device: antialiased bicubic or bilinear (PIL's kernels).

    On CPU the uint8 input goes through torch's SIMD uint8 path (channels-last, no float copy);
    elsewhere it is resized in float32 and rounded back.
    """
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    mode = RESIZE_FILTERS[resize_filter][1]
    if images.device.type == "cpu":
        return F.interpolate(images.contiguous(memory_format=torch.channels_last), size=(size, size),
                             mode=mode, antialias=True)
    out = F.interpolate(images.float(), size=(size, size), mode=mode, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)
