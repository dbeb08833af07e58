"""Encode generated views (uint8 tensors) to JPEG/WebP/PNG bytes."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

#: --format value -> (Pillow format, file extension)
FORMATS = {"jpg": ("JPEG", "jpg"), "webp": ("WEBP", "webp"), "png": ("PNG", "png")}


def encode_view(pixels: np.ndarray, fmt: str = "jpg", quality: int = 95, size: int | None = None) -> tuple[bytes, int, int]:
    """Encode an HxWx3 uint8 array, optionally resized to size x size; return (bytes, width, height)."""
    pil_format, _ = FORMATS[fmt]
    img = Image.fromarray(pixels, "RGB")
    if size and img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    buffer = io.BytesIO()
    if pil_format == "PNG":
        img.save(buffer, format="PNG", optimize=False)
    else:
        img.save(buffer, format=pil_format, quality=quality)
    return buffer.getvalue(), img.width, img.height


def resize_views(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 views [N, 3, S, S] to size x size on their device: antialiased bicubic (PIL's BICUBIC kernel).

    On CPU the uint8 input goes through torch's SIMD uint8 path (channels-last, no float copy);
    elsewhere it is resized in float32 and rounded back.
    """
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if images.device.type == "cpu":
        return F.interpolate(images.contiguous(memory_format=torch.channels_last), size=(size, size),
                             mode="bicubic", antialias=True)
    out = F.interpolate(images.float(), size=(size, size), mode="bicubic", antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def view_array(pixels: np.ndarray | torch.Tensor, size: int | None = None) -> np.ndarray:
    """Return a view as HxWx3 uint8 numpy at `size`: a [1, 3, H, W] CPU tensor is resized here, an array is kept."""
    if isinstance(pixels, torch.Tensor):
        if pixels.dim() == 3:
            pixels = pixels.unsqueeze(0)
        if size:
            # A [1, 3, H, W] slice of a channels-last batch stays channels-last through the resize,
            # so the HWC array below is a free view, not a copy.
            pixels = resize_views(pixels, size)
        return np.ascontiguousarray(pixels[0].permute(1, 2, 0).numpy())
    return pixels


def encode_pixels(pixels: np.ndarray | torch.Tensor, fmt: str = "jpg", quality: int = 95,
                  size: int | None = None) -> tuple[bytes, int, int]:
    """Encode a view given as HxWx3 uint8 array or CHW uint8 CPU tensor; see `encode_view`."""
    return encode_view(view_array(pixels, size), fmt, quality, size)
