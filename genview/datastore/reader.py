"""Reader: samples out of a store's shards, by shard and key, without webdataset or torch."""

from __future__ import annotations

import tarfile
from typing import Iterator

from genview.datastore import layout
from genview.datastore.store import Store


def iter_shard(store: Store, shard: int) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {member suffix: bytes}) for each sample of a done shard, in tar order."""
    current_key, members = None, {}
    with store.fs.open(layout.shard_tar(store.root, shard), "rb") as fh:
        with tarfile.open(fileobj=fh, mode="r|") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, suffix = info.name.split(".", 1)
                if key != current_key and current_key is not None:
                    yield current_key, members
                    members = {}
                current_key = key
                members[suffix] = tar.extractfile(info).read()
    if current_key is not None:
        yield current_key, members


def read_samples(store: Store, shard: int, keys: set[str]) -> dict[str, dict[str, bytes]]:
    """Return the wanted samples of one shard, reading the tar once."""
    found = {}
    for key, members in iter_shard(store, shard):
        if key in keys:
            found[key] = members
            if len(found) == len(keys):
                break
    return found
