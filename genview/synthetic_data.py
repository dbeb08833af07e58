"""Small image sets made on the spot, for the offline demo, tests and benchmarks (no downloads)."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

CLASS_COLOURS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 190, 30), (150, 60, 200), (30, 190, 190)]


def shape_image(rng: random.Random, colour: tuple[int, int, int], size: int = 96) -> Image.Image:
    """Return an RGB image of a few shapes in a class colour on a random background."""
    background = tuple(rng.randrange(0, 256) for _ in range(3))
    img = Image.new("RGB", (size + rng.randrange(0, size // 2), size), background)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randrange(2, 5)):
        x0, y0 = rng.randrange(0, img.width // 2), rng.randrange(0, img.height // 2)
        x1, y1 = x0 + rng.randrange(8, img.width // 2), y0 + rng.randrange(8, img.height // 2)
        jitter = tuple(max(0, min(255, c + rng.randrange(-30, 31))) for c in colour)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=jitter)
    return img


def make_image_folder(root: str | Path, classes: int = 3, per_class: int = 4, size: int = 96, seed: int = 0) -> list[Path]:
    """Write an ImageFolder tree root/class_i/img_j.jpg of synthetic shapes; return the files."""
    rng = random.Random(seed)
    root = Path(root)
    files = []
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            path = folder / f"img_{j:04d}.jpg"
            shape_image(rng, CLASS_COLOURS[c % len(CLASS_COLOURS)], size).save(path, quality=90)
            files.append(path)
    return files


def _png_header_only(width: int, height: int) -> bytes:
    """Return a PNG whose header claims width x height but carries no pixel data (a decompression bomb)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def make_messy_folder(root: str | Path, seed: int = 0) -> dict[str, bool]:
    """Write a folder of awkward inputs; return {relative path: expected to decode}."""
    rng = random.Random(seed)
    root = Path(root)
    (root / "messy").mkdir(parents=True, exist_ok=True)
    expected: dict[str, bool] = {}

    def save(name: str, img: Image.Image, decodable: bool = True, **kwargs) -> None:
        path = root / "messy" / name
        img.save(path, **kwargs)
        expected[f"messy/{name}"] = decodable

    base = shape_image(rng, (200, 50, 50), 64)
    good = io.BytesIO()
    base.save(good, format="JPEG")
    save("plain.jpg", base)
    save("upper_case.JPEG", base, format="JPEG")
    save("cmyk.jpg", base.convert("CMYK"))
    save("palette.png", base.convert("P", palette=Image.ADAPTIVE))
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    save("alpha.png", rgba)
    save("gray16.png", Image.frombytes("I;16", (32, 32), bytes(rng.randrange(256) for _ in range(32 * 32 * 2))))
    save("tiny_1x1.png", Image.new("RGB", (1, 1), (10, 200, 30)))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW on display
    save("exif_rotated.jpg", Image.new("RGB", (80, 40), (0, 0, 255)), exif=exif.tobytes())
    save("ünïcødé name.jpg", base)
    save("dotted.name.v1.jpg", base)
    save("grey.png", base.convert("L"))
    (root / "messy" / "empty.jpg").write_bytes(b"")
    expected["messy/empty.jpg"] = False
    (root / "messy" / "not_an_image.jpg").write_bytes(b"this is a text file pretending to be a JPEG\n" * 4)
    expected["messy/not_an_image.jpg"] = False
    data = good.getvalue()
    (root / "messy" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    expected["messy/truncated.jpg"] = False
    (root / "messy" / "bomb.png").write_bytes(_png_header_only(30000, 30000))
    expected["messy/bomb.png"] = False
    # Ignored entirely: hidden files and non-images are not sources.
    (root / "messy" / ".hidden.jpg").write_bytes(data)
    (root / "messy" / "notes.txt").write_text("not a source\n")
    return expected
