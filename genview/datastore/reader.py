"""Reader: samples out of a store's shards, by shard and key, without webdataset or torch."""

from __future__ import annotations

from typing import Iterator

from genview.datastore import layout
from genview.datastore.store import Store
from genview.datastore.tarindex import iter_samples


def iter_shard(store: Store, shard: int) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {member suffix: bytes}) for each sample of a done shard, in tar order."""
    with store.fs.open(layout.shard_tar(store.root, shard), "rb") as fh:
        yield from iter_samples(fh)


def read_samples(store: Store, shard: int, keys: set[str]) -> dict[str, dict[str, bytes]]:
    """Return the wanted samples of one shard, reading the tar once."""
    found = {}
    for key, members in iter_shard(store, shard):
        if key in keys:
            found[key] = members
            if len(found) == len(keys):
                break
    return found
