"""Decode a source's bytes once into an RGB PIL image, turning every bad input into a clear error."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Sources above this many pixels are refused as decompression bombs (Pillow's own default limit).
MAX_PIXELS = 89_478_485


class DecodeError(ValueError):
    """A source that cannot become an RGB image; the message is recorded in the manifest."""


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: 16/32-bit scaled, CMYK converted, alpha over white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        arr = np.clip((arr - lo) / max(hi - lo, 1e-12) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


#: Draft decoding never goes below this short side, whatever the model.
DRAFT_FLOOR = 256


def draft_min_side(input_side: int, floor: int = DRAFT_FLOOR) -> int:
    """Return the smallest short side a JPEG may be draft-decoded to for a model that resizes to `input_side`.

    Twice the model's input side: JPEG draft scaling (1/2, 1/4, 1/8 in the DCT) then a resize from at
    least 2x gives the pixels of a full decode within a few levels; decoding closer to the input side
    (e.g. a 4096x3072 photo drafted to 512x384 for a 256 px IC-GAN) is up to ~12 levels off.
    """
    return max(int(floor), 2 * int(input_side))


def decode_image(data: bytes, min_side: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode bytes to an RGB image with EXIF orientation applied; JPEGs are draft-decoded near min_side."""
    if not data:
        raise DecodeError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise DecodeError(f"decompression bomb: {width}x{height} pixels exceeds the limit of {max_pixels}")
            if min_side and img.format == "JPEG":
                # Draft mode decodes at 1/2, 1/4 or 1/8 scale straight from the DCT, keeping both
                # sides >= min_side: the biggest single saving when sources are large JPEGs.
                img.draft("RGB", (min_side, min_side))
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("not an image (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"cannot decode: {exc}") from None
