"""Encode generated views (uint8 tensors) to JPEG/WebP/PNG bytes."""

from __future__ import annotations

import io

import numpy as np
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
