"""Test helper: rewrite one class's generated views of a store through the shard writer API."""

from __future__ import annotations

import io
import json
from typing import Callable

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from genview.datastore import layout
from genview.datastore.reader import iter_shard
from genview.datastore.shard_writer import ShardWriter
from genview.datastore.store import Store

#: Stats fields ShardWriter.commit computes itself.
_WRITER_FIELDS = {"shard", "tar", "tar_bytes", "tar_sha256", "samples"}


def jpeg(img: Image.Image, quality: int = 95) -> bytes:
    """Encode an RGB image as JPEG bytes (at quality 100 without chroma subsampling: as close to lossless as JPEG gets)."""
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality, **({"subsampling": 0} if quality == 100 else {}))
    return buffer.getvalue()


def noise_view(rng: np.random.Generator, size: int) -> Image.Image:
    """Uniform RGB noise: a view that has nothing to do with its source."""
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def rewrite_views(
    url: str, label: str, make_view: Callable[[Image.Image, int, int], Image.Image], quality: int = 95
) -> int:
    """Replace every view of class `label` by make_view(source image, source id, view); return views replaced."""
    store = Store(url)
    replaced = 0
    for shard in sorted(store.done_shards()):
        with store.fs.open(layout.shard_manifest(store.root, shard), "rb") as fh:
            rows = pq.read_table(fh).to_pylist()
        stats = {k: v for k, v in store.read_stats(shard).items() if k not in _WRITER_FIELDS}
        by_member = {row["member"]: row for row in rows if row["status"] == "ok"}
        writer = ShardWriter(store, shard)
        for key, members in iter_shard(store, shard):
            src_name = next(name for name in members if name.startswith("src."))
            source = Image.open(io.BytesIO(members[src_name])).convert("RGB")
            for name in list(members):
                row = by_member.get(f"{key}.{name}")
                if row is None or row["label"] != label:
                    continue
                size = Image.open(io.BytesIO(members[name])).size[0]
                members[name] = jpeg(make_view(source, row["source_id"], row["view"]).resize((size, size)), quality)
                row["bytes"] = len(members[name])
                replaced += 1
            writer.write_sample(key, members)
        writer.add_rows(rows)
        writer.commit(stats)
    # The header keeps the spec; a marker file says the views were doctored (tests only).
    store.fs.pipe(store.path("DOCTORED.json"), json.dumps({"label": label}).encode())
    return replaced


def strip_sources(url: str, shard: int) -> int:
    """Rewrite one shard without its source copies (as `--source-copy none` makes it); return samples rewritten."""
    store = Store(url)
    with store.fs.open(layout.shard_manifest(store.root, shard), "rb") as fh:
        rows = pq.read_table(fh).to_pylist()
    stats = {k: v for k, v in store.read_stats(shard).items() if k not in _WRITER_FIELDS}
    writer = ShardWriter(store, shard)
    count = 0
    for key, members in iter_shard(store, shard):
        writer.write_sample(key, {name: data for name, data in members.items() if not name.startswith("src.")})
        count += 1
    writer.add_rows(rows)
    writer.commit(stats)
    return count
