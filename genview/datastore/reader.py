"""Reader: samples out of a store's shards, by shard and key, without webdataset or torch."""

from __future__ import annotations

import io
from typing import Iterator

from genview.datastore import layout
from genview.datastore.store import Store
from genview.datastore.summary import load_member_index, sample_spans
from genview.datastore.tarindex import iter_samples


def iter_shard(store: Store, shard: int) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {member suffix: bytes}) for each sample of a done shard, in tar order."""
    with store.fs.open(layout.shard_tar(store.root, shard), "rb") as fh:
        yield from iter_samples(fh)


def read_samples(store: Store, shard: int, keys: set[str]) -> dict[str, dict[str, bytes]]:
    """Return the wanted samples of one shard: one range read each, placed by the shard's member index."""
    index = load_member_index(store.fs, store.root, shard)
    names, starts, lengths = sample_spans(index)
    path = layout.shard_tar(store.root, shard)
    found = {}
    for key, start, length in zip(names, starts.tolist(), lengths.tolist()):
        if key in keys:
            data = store.fs.cat_file(path, start=start, end=start + length)
            for sample_key, members in iter_samples(io.BytesIO(data)):
                found[sample_key] = members
    return found
