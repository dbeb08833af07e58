"""Byte offsets of every member of a shard tar, so one image is one ranged read, not a shard scan."""

from __future__ import annotations

import os
import threading

from genview.datastore import layout
from genview.datastore.fs import is_local
from genview.datastore.store import Store
from genview.datastore.tarindex import MemberEntry, TarFormatError, index_tar, read_member, split_member


class ShardMemberIndex:
    """Member name -> byte span, per done shard, built once from the tar headers (no image bytes read)."""

    def __init__(self, store: Store):
        self.store = store
        self._shards: dict[int, dict[str, MemberEntry]] = {}
        self._keys: dict[int, dict[str, dict[str, str]]] = {}
        self._fds: dict[int, int] = {}  # local stores: one open descriptor per shard, read with pread
        self._local = is_local(store.fs)
        self._lock = threading.Lock()

    def members(self, shard: int) -> dict[str, MemberEntry]:
        """Every member of a shard's tar with its byte span (headers only, cached)."""
        with self._lock:
            found = self._shards.get(shard)
        if found is not None:
            return found
        try:
            entries = index_tar(self.store.fs, layout.shard_tar(self.store.root, shard))
        except TarFormatError as exc:
            raise OSError(f"shard {layout.shard_name(shard)} cannot be indexed: {exc}") from None
        spans = {entry.name: entry for entry in entries}
        by_key: dict[str, dict[str, str]] = {}
        for name in spans:
            key, suffix = split_member(name)
            by_key.setdefault(key, {})[suffix] = name
        with self._lock:
            self._shards[shard] = spans
            self._keys[shard] = by_key
        return spans

    def read(self, shard: int, member: str) -> bytes:
        """The bytes of one member, read by offset; KeyError when the shard has no such member."""
        entry = self.members(shard)[member]
        path = layout.shard_tar(self.store.root, shard)
        if not self._local:
            return read_member(self.store.fs, path, entry)
        # pread: no seek state shared between threads, no Python file object per image.
        with self._lock:
            fd = self._fds.get(shard)
            if fd is None:
                fd = self._fds[shard] = os.open(path, os.O_RDONLY)
        return os.pread(fd, entry.size, entry.offset)

    def sample_members(self, shard: int, key: str) -> dict[str, str]:
        """Suffix (e.g. 'src.jpg', 'sec.png') -> member name for one sample key."""
        self.members(shard)
        with self._lock:
            return dict(self._keys[shard].get(key, {}))

    def close(self) -> None:
        """Close the descriptors of local shards."""
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            os.close(fd)
