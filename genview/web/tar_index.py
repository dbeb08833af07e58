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

import pyarrow as pa
import pyarrow.compute as pc

from genview.datastore import layout
from genview.datastore.fs import is_local
from genview.datastore.store import Store
from genview.datastore.summary import load_member_index
from genview.datastore.tarindex import MemberEntry, TarFormatError, read_member, split_member

#: Member indexes kept (about 0.5 MB each for a 1,000-source shard with K=10).
MAX_SHARDS = 128
#: Shard files kept open (local stores), far below the usual 1,024-descriptor limit.
MAX_FILES = 64


class ShardMemberIndex:
    """Member name -> byte span, per done shard, from its member index (no image bytes read).

    A shard's index stays an Arrow table (a name column and two integer columns, about 0.5 MB
    for 13,000 members) searched by vectorised kernels: no Python object per member.
    """

    def __init__(self, store: Store, max_shards: int = MAX_SHARDS, max_files: int = MAX_FILES):
        self.store = store
        self.max_shards, self.max_files = max_shards, max_files
        self._shards: OrderedDict[int, pa.Table] = OrderedDict()
        self._fds: OrderedDict[int, int] = OrderedDict()  # local stores: open descriptors, read with pread
        self._local = is_local(store.fs)
        self._lock = threading.Lock()

    def _table(self, shard: int) -> pa.Table:
        with self._lock:
            found = self._shards.get(shard)
            if found is not None:
                self._shards.move_to_end(shard)
                return found
        try:
            table = load_member_index(self.store.fs, self.store.root, shard).select(["member", "offset", "size"])
        except TarFormatError as exc:
            raise OSError(f"shard {layout.shard_name(shard)} cannot be indexed: {exc}") from None
        table = table.combine_chunks()
        with self._lock:
            self._shards[shard] = table
            while len(self._shards) > self.max_shards:
                self._shards.popitem(last=False)
        return table

    def entry(self, shard: int, member: str) -> MemberEntry:
        """Where one member's bytes are; KeyError when the shard has no such member."""
        table = self._table(shard)
        row = pc.index(table.column("member"), member).as_py()
        if row < 0:
            raise KeyError(member)
        return MemberEntry(member, table.column("offset")[row].as_py(), table.column("size")[row].as_py())

    def read(self, shard: int, member: str) -> bytes:
        """The bytes of one member, read by offset; KeyError when the shard has no such member."""
        entry = self.entry(shard, member)
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
        names = self._table(shard).column("member")
        found = names.filter(pc.starts_with(names, key + ".")).to_pylist()
        return {split_member(name)[1]: name for name in found if split_member(name)[0] == key}

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
