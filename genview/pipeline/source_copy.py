"""The source member of a sample: the source as the generator saw it, in one format per store."""

from __future__ import annotations

import collections
import dataclasses
import io
import posixpath
from typing import Iterable

from PIL import Image

#: --source-copy values: jpg/png re-encode the decoded image; original keeps the file's bytes.
SOURCE_COPY_MODES = ("jpg", "png", "original", "none")


def source_extension(uri: str) -> str:
    """Return the lower-case extension of a source file (for --source-copy original)."""
    ext = posixpath.splitext(uri)[1].lower().lstrip(".")
    return ext or "bin"


def source_formats(uris: Iterable[str]) -> dict[str, int]:
    """Return how many sources have each file extension (what --source-copy original stores them as)."""
    return dict(sorted(collections.Counter(source_extension(uri) for uri in uris).items()))


def mixed_formats_message(formats: dict[str, int]) -> str:
    """The warning for --source-copy original over a listing of several formats (also shown by `inspect`)."""
    counts = ", ".join(f"{count} {ext}" for ext, count in formats.items())
    return (
        f"--source-copy original over sources in {len(formats)} formats ({counts}): samples get src.{'/src.'.join(formats)} "
        "members, so outside tar readers that ask for one member name (Hugging Face datasets, Ray Data, webdataset's "
        "to_tuple('src.jpg')) will not open this store; --source-copy jpg (the default) or png gives one name"
    )


@dataclasses.dataclass(frozen=True)
class SourceCopy:
    """How sources are kept in the store: mode (jpg|png|original|none), short side, JPEG quality.

    jpg and png store the decoded image the encoder saw (RGB, EXIF orientation applied, alpha
    flattened over white), so every outside reader sees what the generator saw and a store has
    one fixed member name (`src.jpg`) that `to_tuple("src.jpg", ...)` can ask for.
    """

    mode: str = "jpg"
    size: int | None = None
    quality: int = 95

    def __post_init__(self) -> None:
        if self.mode not in SOURCE_COPY_MODES:
            raise ValueError(f"source copy must be one of {', '.join(SOURCE_COPY_MODES)}, got {self.mode!r}")

    def member(self, image: Image.Image | None, data: bytes | None, uri: str) -> tuple[str, bytes] | None:
        """Return (extension, bytes) of the source member, or None when sources are not kept."""
        if self.mode == "none":
            return None
        if self.mode == "original":
            return source_extension(uri), data
        img = image
        if self.size and min(img.size) > self.size:
            scale = self.size / min(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
        buffer = io.BytesIO()
        if self.mode == "png":
            img.save(buffer, format="PNG")
        else:
            img.save(buffer, format="JPEG", quality=self.quality)
        return self.mode, buffer.getvalue()
