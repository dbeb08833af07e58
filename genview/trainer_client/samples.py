"""One store sample as read from a shard (members still encoded), and streaming a range of a shard."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Iterator

import fsspec
from PIL import Image
from webdataset.tariterators import group_by_keys

from genview.trainer_client.store_index import CorruptShardError, shard_name
from genview.datastore.tarindex import TarFormatError, iter_tar


class CorruptSampleError(CorruptShardError):
    """Raised when one sample is unusable (missing member, bad JSON, undecodable image); names it."""


def decode_rgb(data: bytes, what: str = "image") -> Image.Image:
    """Decode image bytes to an RGB PIL image; CorruptSampleError names `what` on failure."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptSampleError(f"{what} cannot be decoded: {exc}") from None
    return image if image.mode == "RGB" else image.convert("RGB")


@dataclass
class RawSample:
    """A sample's tar members by extension ('src.png', 'v0.jpg', 'json', 'sec.png', ...) and parsed JSON."""

    key: str
    shard: int
    members: dict[str, bytes]
    meta: dict[str, Any]
    _by_prefix: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # 'v3.jpg' -> prefix 'v3': views and sources are found whatever image format they use.
        self._by_prefix = {name.split(".", 1)[0]: name for name in self.members}

    @property
    def source_id(self) -> int:
        """The source id (from the sample's JSON)."""
        return int(self.meta["source_id"])

    @property
    def label_index(self) -> int:
        """The integer label, -1 when the source has none (so it collates into a tensor)."""
        value = self.meta.get("label_index")
        return -1 if value is None else int(value)

    def has(self, prefix: str) -> bool:
        """Return True when a member with this prefix ('src', 'v0', 'sec') exists."""
        return prefix in self._by_prefix

    def member(self, prefix: str) -> bytes:
        """Return the bytes of the member with this prefix; CorruptSampleError if it is missing."""
        try:
            return self.members[self._by_prefix[prefix]]
        except KeyError:
            raise CorruptSampleError(
                f"sample {self.key} of shard {shard_name(self.shard)} has no {prefix}.* member "
                f"(members: {', '.join(sorted(self.members))})"
            ) from None

    def image(self, prefix: str) -> Image.Image:
        """Decode the member with this prefix to an RGB image."""
        where = f"{self.key}.{self._by_prefix.get(prefix, prefix)} (shard {shard_name(self.shard)})"
        return decode_rgb(self.member(prefix), where)

    def source(self) -> Image.Image:
        """Decode the source image (original bytes)."""
        return self.image("src")

    def view(self, j: int) -> Image.Image:
        """Decode generated view j."""
        return self.image(f"v{j}")

    def secondary(self) -> Image.Image:
        """Decode the secondary source of an interpolation store."""
        return self.image("sec")


def parse_sample(raw: dict[str, Any], shard: int, k: int, require_source: bool = True) -> RawSample:
    """Turn a webdataset sample dict into a RawSample, checking the members the contract requires.

    ``require_source=False`` for stores made with ``--source-copy none`` (no ``src.*`` member).
    """
    key = raw["__key__"]
    members = {name: value for name, value in raw.items() if not name.startswith("__")}
    where = f"sample {key} of shard {shard_name(shard)}"
    if "json" not in members:
        raise CorruptSampleError(f"{where} has no .json member")
    try:
        meta = json.loads(members["json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptSampleError(f"{where} has invalid JSON: {exc}") from None
    if not isinstance(meta, dict) or "source_id" not in meta:
        raise CorruptSampleError(f"{where}: its JSON has no source_id")
    if not key.isdigit() or int(key) != int(meta["source_id"]):
        raise CorruptSampleError(f"{where}: key does not match JSON source_id {meta['source_id']}")
    sample = RawSample(key=key, shard=shard, members=members, meta=meta)
    missing = [p for p in ["src"] * require_source + [f"v{j}" for j in range(k)] if not sample.has(p)]
    if missing:
        raise CorruptSampleError(f"{where} lacks member(s) {', '.join(missing)} (store k={k})")
    return sample


def iter_shard_range(
    fs: fsspec.AbstractFileSystem,
    path: str,
    shard: int,
    expected: int,
    k: int,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield webdataset sample dicts start..stop-1 of a shard (by position in the tar).

    Samples before `start` are skipped without decoding. When the range reaches the shard's end,
    the tar is read to its end and the sample count is checked against `expected` (the manifest).
    Structural damage (unreadable tar, wrong count) raises CorruptShardError naming the shard.
    """
    stop = expected if stop is None else stop
    seen = 0
    url = fs.unstrip_protocol(path)
    try:
        with fs.open(path, "rb") as stream:
            # webdataset's grouping of members into samples, over our fast tar member reader.
            files = ({"fname": m.name, "data": m.data, "__url__": url} for m in iter_tar(stream))
            for raw in group_by_keys(files):
                if seen >= stop and stop < expected:
                    return  # the rest of the shard belongs to another partition
                if start <= seen < stop:
                    yield raw
                seen += 1
    except CorruptShardError:
        raise
    except (TarFormatError, OSError, EOFError, ValueError, KeyError) as exc:
        raise CorruptShardError(
            f"shard {shard_name(shard)} ({url}) is unreadable after {seen} samples: "
            f"{type(exc).__name__}: {exc.args[0] if exc.args else exc}"
        ) from None
    if seen != expected:
        raise CorruptShardError(
            f"shard {shard_name(shard)} ({url}) holds {seen} samples but its manifest lists {expected}"
        )
