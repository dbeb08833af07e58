"""Byte offsets of every member of a shard tar, so one image is one ranged read, not a shard scan.

Member indexes come from each shard's `stats/NNNNNN.index.parquet` (a header scan for shards
written without one). Both caches are bounded: a store of any number of shards is browsed with
at most `max_shards` indexes in memory and `max_files` descriptors open, least recently used
dropped first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from genview.datastore import layout
from genview.datastore.fs import is_local
from genview.datastore.store import Store
from genview.datastore.summary import load_member_index
from genview.datastore.tarindex import MemberEntry, TarFormatError, read_member, split_member

#: Member indexes kept (about 1 MB each for a 1,000-source shard with K=10).
MAX_SHARDS = 128
#: Shard files kept open (local stores), far below the usual 1,024-descriptor limit.
MAX_FILES = 64


class ShardMemberIndex:
    """Member name -> byte span, per done shard, from its member index (no image bytes read)."""

    def __init__(self, store: Store, max_shards: int = MAX_SHARDS, max_files: int = MAX_FILES):
        self.store = store
        self.max_shards, self.max_files = max_shards, max_files
        self._shards: OrderedDict[int, tuple[dict[str, MemberEntry], dict[str, dict[str, str]]]] = OrderedDict()
        self._fds: OrderedDict[int, int] = OrderedDict()  # local stores: open descriptors, read with pread
        self._local = is_local(store.fs)
        self._lock = threading.Lock()

    def _entry(self, shard: int) -> tuple[dict[str, MemberEntry], dict[str, dict[str, str]]]:
        with self._lock:
            found = self._shards.get(shard)
            if found is not None:
                self._shards.move_to_end(shard)
                return found
        try:
            table = load_member_index(self.store.fs, self.store.root, shard)
        except TarFormatError as exc:
            raise OSError(f"shard {layout.shard_name(shard)} cannot be indexed: {exc}") from None
        spans: dict[str, MemberEntry] = {}
        by_key: dict[str, dict[str, str]] = {}
        for name, offset, size in zip(table.column("member").to_pylist(), table.column("offset").to_pylist(),
                                      table.column("size").to_pylist()):
            spans[name] = MemberEntry(name, offset, size)
            key, suffix = split_member(name)
            by_key.setdefault(key, {})[suffix] = name
        with self._lock:
            self._shards[shard] = (spans, by_key)
            while len(self._shards) > self.max_shards:
                self._shards.popitem(last=False)
        return spans, by_key

    def members(self, shard: int) -> dict[str, MemberEntry]:
        """Every member of a shard's tar with its byte span (cached, least recently used dropped)."""
        return self._entry(shard)[0]

    def read(self, shard: int, member: str) -> bytes:
        """The bytes of one member, read by offset; KeyError when the shard has no such member."""
        entry = self.members(shard)[member]
        path = layout.shard_tar(self.store.root, shard)
        if not self._local:
            return read_member(self.store.fs, path, entry)
        # pread: no seek state shared between threads, no Python file object per image. The
        # descriptor is read under the lock, so eviction never closes one in use.
        with self._lock:
            fd = self._fds.get(shard)
            if fd is None:
                fd = self._fds[shard] = os.open(path, os.O_RDONLY)
                while len(self._fds) > self.max_files:
                    os.close(self._fds.popitem(last=False)[1])
            else:
                self._fds.move_to_end(shard)
            return os.pread(fd, entry.size, entry.offset)

    def sample_members(self, shard: int, key: str) -> dict[str, str]:
        """Suffix (e.g. 'src.jpg', 'sec.png') -> member name for one sample key."""
        return dict(self._entry(shard)[1].get(key, {}))

    def open_files(self) -> int:
        """How many shard files are open now."""
        with self._lock:
            return len(self._fds)

    def close(self) -> None:
        """Close the descriptors of local shards and drop the indexes."""
        with self._lock:
            fds, self._fds = list(self._fds.values()), OrderedDict()
            self._shards.clear()
        for fd in fds:
            os.close(fd)
