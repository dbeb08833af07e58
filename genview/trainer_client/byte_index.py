"""Where each sample sits in its shard's tar (a byte index), and reading one sample with one range read.

Both datasets read samples by position: ``GenViewMapDataset`` by index, ``GenViewDataset`` in the
epoch's permuted order. The index is built from tar member headers only (no image bytes) and can
be cached as parquet; a sample's range covers all its members, so reading it is one seek + read
on local disk, one range request on an object store.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genview.datastore.fs import is_local
from genview.datastore.summary import has_summary, load_member_index, sample_spans
from genview.datastore.tarindex import TarFormatError, index_samples, iter_tar, split_member
from genview.trainer_client.samples import RawSample, parse_sample
from genview.trainer_client.store_index import CorruptShardError, ShardEntry, StoreFormatError, StoreIndex, shard_name

#: Open shard files kept per process (local stores).
_MAX_OPEN_FILES = 16

BYTE_INDEX_SCHEMA = pa.schema([("shard", pa.int32()), ("offset", pa.int64()), ("length", pa.int64()),
                               ("source_id", pa.int64())])


def scan_shard(fs, path: str, shard: int, root: str | None = None, marker: dict[str, Any] | None = None
               ) -> tuple[list[str], list[int], list[int]]:
    """Return (keys, byte start, byte length) of every sample of a tar.

    From the shard's member index (`stats/NNNNNN.index.parquet`) when its done ``marker`` vouches
    for one (one small read), else by reading the tar's member headers. A sample is the contiguous
    run of members sharing a key (webdataset groups the same way), so one range read of
    [start, start + length) returns all its members.
    """
    if root is not None and has_summary(marker):
        try:
            keys, starts, lengths = sample_spans(load_member_index(fs, root, shard, marker))
        except (OSError, ValueError) as exc:
            raise CorruptShardError(f"shard {shard_name(shard)}: member index unreadable: {exc}") from None
        return keys, starts.tolist(), lengths.tolist()
    try:
        with fs.open(path, "rb") as fh:
            entries = index_samples(fh)
    except (TarFormatError, OSError, EOFError) as exc:
        raise CorruptShardError(f"shard {shard_name(shard)} ({path}) cannot be indexed: {exc}") from None
    return [e.key for e in entries], [e.start for e in entries], [e.length for e in entries]


def shard_byte_index(index: StoreIndex, entry: ShardEntry) -> pa.Table:
    """Return one complete shard's byte index, checked against its manifest's sample count."""
    keys, starts, spans = scan_shard(index.fs, entry.path, entry.shard, index.root, index.markers.get(entry.shard))
    if len(keys) != entry.samples:
        raise CorruptShardError(
            f"shard {shard_name(entry.shard)} ({entry.path}) holds {len(keys)} samples but its manifest lists {entry.samples}"
        )
    if not all(key.isdigit() for key in keys):
        raise StoreFormatError(f"shard {shard_name(entry.shard)} has sample keys that are not source ids")
    return pa.table({"shard": pa.array([entry.shard] * len(keys), pa.int32()), "offset": pa.array(starts, pa.int64()),
                     "length": pa.array(spans, pa.int64()), "source_id": pa.array([int(k) for k in keys], pa.int64())},
                    schema=BYTE_INDEX_SCHEMA)


def _fingerprint(index: StoreIndex) -> str:
    sizes = {entry.shard: [entry.samples, int(index.fs.size(entry.path))] for entry in index.shards}
    return json.dumps({"store": index.url, "shards": sizes}, sort_keys=True)


def load_or_build(index: StoreIndex, cache: str | os.PathLike | None = None) -> pa.Table:
    """Return the byte index of every complete shard (store order), reusing `cache` while the shards are unchanged."""
    fingerprint = _fingerprint(index) if cache is not None else ""
    if cache is not None and os.path.exists(cache):
        table = pq.read_table(cache)
        if (table.schema.metadata or {}).get(b"genview_fingerprint", b"").decode() == fingerprint:
            return table
    tables = [shard_byte_index(index, entry) for entry in index.shards]
    table = pa.concat_tables(tables) if tables else BYTE_INDEX_SCHEMA.empty_table()
    if cache is not None:
        table = table.replace_schema_metadata({"genview_fingerprint": fingerprint})
        tmp = f"{cache}.{os.getpid()}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, cache)
    return table


class SampleReader:
    """Reads sample i of a byte index (its members still encoded) with one range read.

    Local shards stay open (a few per process, never shared with forked workers); remote ones are
    read with one ranged request per sample (no read-ahead of bytes the next sample will not use).
    """

    def __init__(self, index: StoreIndex, table: pa.Table):
        self.index = index
        self.shard_of = table.column("shard").to_numpy().astype(np.int32)
        self.offsets = table.column("offset").to_numpy().astype(np.int64)
        self.lengths = table.column("length").to_numpy().astype(np.int64)
        self.source_ids = table.column("source_id").to_numpy().astype(np.int64)
        self._local = is_local(index.fs)
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.source_ids)

    def raw(self, i: int) -> RawSample:
        """Return sample i; CorruptShardError (naming the shard) when its bytes are not a sample any more."""
        shard, offset, length = int(self.shard_of[i]), int(self.offsets[i]), int(self.lengths[i])
        path = self.index.entry(shard).path
        members: dict[str, Any] = {}
        try:
            if self._local:
                fh = self._file(shard, path)
                fh.seek(offset)
                data = fh.read(length)
            else:
                data = self.index.fs.cat_file(path, start=offset, end=offset + length)
            if len(data) != length:
                raise TarFormatError(f"short read: {len(data)} of {length} bytes")
            for member in iter_tar(io.BytesIO(data)):
                members[split_member(member.name)[1].lower()] = member.data
        except (TarFormatError, OSError, ValueError) as exc:
            raise CorruptShardError(
                f"sample {int(self.source_ids[i])} of shard {shard_name(shard)} cannot be read "
                f"(store changed since indexing?): {exc}"
            ) from None
        members["__key__"] = f"{int(self.source_ids[i]):010d}"
        return parse_sample(members, shard, self.index.k, self.index.has_source)

    def _file(self, shard: int, path: str):
        if os.getpid() != self._pid:  # forked worker: never share file positions with the parent
            self._files, self._pid = {}, os.getpid()
        fh = self._files.get(shard)
        if fh is None:
            if len(self._files) >= _MAX_OPEN_FILES:
                self._files.pop(next(iter(self._files))).close()
            fh = self._files[shard] = self.index.fs.open(path, "rb")
        return fh

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = {}
        return state

    def close(self) -> None:
        """Close the open shard files."""
        for fh in self._files.values():
            try:
                fh.close()
            except Exception:  # noqa: BLE001 - at interpreter shutdown the file's module may be gone
                continue  # closing is best effort here; the OS closes what is left
        self._files = {}

    def __del__(self) -> None:
        self.close()
