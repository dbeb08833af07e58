"""Decoding awkward sources: what becomes RGB, what becomes a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from genview.pipeline.decode import DecodeError, decode_image
from genview.synthetic_data import make_messy_folder


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    return root, make_messy_folder(root)


def test_every_messy_input_decodes_or_fails_clearly(messy):
    root, expected = messy
    for name, decodable in expected.items():
        data = (root / name).read_bytes()
        if decodable:
            img = decode_image(data)
            assert img.mode == "RGB" and min(img.size) >= 1, name
        else:
            with pytest.raises(DecodeError) as info:
                decode_image(data)
            assert str(info.value), name


@pytest.mark.parametrize(
    "name, fragment",
    [("empty.jpg", "empty file"), ("not_an_image.jpg", "not an image"), ("truncated.jpg", "truncated"), ("bomb.png", "decompression bomb")],
)
def test_error_messages_name_the_problem(messy, name, fragment):
    root, _ = messy
    with pytest.raises(DecodeError, match=fragment):
        decode_image((root / "messy" / name).read_bytes())


def test_exif_orientation_is_applied(messy):
    root, _ = messy
    img = decode_image((root / "messy" / "exif_rotated.jpg").read_bytes())
    assert img.size == (40, 80)  # stored 80x40 with orientation 6 (rotate 90)


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    assert np.asarray(decode_image(buf.getvalue())).min() == 255


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.full((4, 4), 65535 // 2, dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    value = int(np.asarray(decode_image(buf.getvalue()))[0, 0, 0])
    assert 126 <= value <= 129  # mid-grey, not saturated white


def test_cmyk_becomes_rgb():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).convert("CMYK").save(buf, format="JPEG")
    r, g, b = np.asarray(decode_image(buf.getvalue())).reshape(-1, 3).mean(0)
    assert r > 150 and g < 80 and b < 80


def test_jpeg_draft_mode_downscales_large_sources():
    buf = io.BytesIO()
    Image.new("RGB", (2048, 1536), (10, 120, 200)).save(buf, format="JPEG")
    full = decode_image(buf.getvalue())
    small = decode_image(buf.getvalue(), min_side=256)
    assert full.size == (2048, 1536)
    assert min(small.size) >= 256 and small.size[0] < 2048  # decoded at 1/2..1/8 scale, never below 256
