"""GenViewMapDataset: random access by index over a store, for code that needs __getitem__ + DistributedSampler."""

from __future__ import annotations

import io
import json
import os
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import Dataset

from genview.trainer_client.filters import EligibleViews, ViewFilter, eligible_views
from genview.trainer_client.policies import PairPolicy, ViewContext
from genview.trainer_client.runtime import SharedEpoch
from genview.trainer_client.samples import RawSample, parse_sample
from genview.trainer_client.sampler import ViewRequest
from genview.trainer_client.store_index import CorruptShardError, StoreFormatError, StoreIndex, shard_name
from genview.datastore.summary import has_summary, load_member_index, sample_spans
from genview.datastore.tarindex import TarFormatError, index_samples, iter_tar, split_member

#: Open shard files kept per process.
_MAX_OPEN_FILES = 16


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


class GenViewMapDataset(Dataset):
    """A map-style dataset over a store: index i is the i-th sample in (shard, tar) order.

    The index holds one (shard, byte offset, byte length) per sample, built by reading tar member
    headers (no image bytes) and optionally cached as parquet at ``index_cache``; ``__getitem__``
    is one range read. Accepts an int or a ``ViewRequest`` (from ``FixedCountBatchSampler``),
    whose ``generated`` flag overrides the policy's p draw. Use ``set_epoch`` each epoch so the
    generated view drawn for each source changes (the same (seed, epoch) gives the same views).
    Damaged data always raises here (a map-style dataset cannot skip an index).
    """

    def __init__(
        self,
        store: str | StoreIndex,
        policy: Callable[[RawSample, ViewContext], Any] | None = None,
        *,
        seed: int = 0,
        view_filter: ViewFilter | None = None,
        index_cache: str | os.PathLike | None = None,
        epoch: int = 0,
        storage_options: dict[str, Any] | None = None,
    ):
        self.index = store if isinstance(store, StoreIndex) else StoreIndex(store, storage_options)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.policy = policy if policy is not None else PairPolicy()
        self.seed = int(seed)
        self.view_filter = view_filter
        self.eligible: EligibleViews | None = (
            eligible_views(self.index, view_filter) if view_filter is not None and view_filter.active else None
        )
        table = self._load_or_build(index_cache)
        self.shard_of = table.column("shard").to_numpy().astype(np.int32)
        self.offsets = table.column("offset").to_numpy().astype(np.int64)
        self.lengths = table.column("length").to_numpy().astype(np.int64)
        self.source_ids = table.column("source_id").to_numpy().astype(np.int64)
        self._epoch = SharedEpoch(epoch)
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()

    # -- index -------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        sizes = {}
        for entry in self.index.shards:
            sizes[entry.shard] = [entry.samples, int(self.index.fs.size(entry.path))]
        return json.dumps({"store": self.index.url, "shards": sizes}, sort_keys=True)

    def _load_or_build(self, cache: str | os.PathLike | None) -> pa.Table:
        fingerprint = self._fingerprint() if cache is not None else ""
        if cache is not None and os.path.exists(cache):
            table = pq.read_table(cache)
            if (table.schema.metadata or {}).get(b"genview_fingerprint", b"").decode() == fingerprint:
                return table
        table = self._build_index()
        if cache is not None:
            table = table.replace_schema_metadata({"genview_fingerprint": fingerprint})
            tmp = f"{cache}.{os.getpid()}.tmp"
            pq.write_table(table, tmp)
            os.replace(tmp, cache)
        return table

    def _build_index(self) -> pa.Table:
        shards, offsets, lengths, ids = [], [], [], []
        for entry in self.index.shards:
            keys, starts, spans = scan_shard(self.index.fs, entry.path, entry.shard, self.index.root,
                                             self.index.markers.get(entry.shard))
            if len(keys) != entry.samples:
                raise CorruptShardError(
                    f"shard {shard_name(entry.shard)} ({entry.path}) holds {len(keys)} samples but its "
                    f"manifest lists {entry.samples}"
                )
            if not all(key.isdigit() for key in keys):
                raise StoreFormatError(f"shard {shard_name(entry.shard)} has sample keys that are not source ids")
            shards += [entry.shard] * len(keys)
            offsets += starts
            lengths += spans
            ids += [int(key) for key in keys]
        return pa.table(
            {
                "shard": pa.array(shards, pa.int32()),
                "offset": pa.array(offsets, pa.int64()),
                "length": pa.array(lengths, pa.int64()),
                "source_id": pa.array(ids, pa.int64()),
            }
        )

    # -- epoch, filters ----------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; DataLoader workers, persistent or not, pick it up."""
        self._epoch.set(epoch)

    def eligible_mask(self) -> np.ndarray:
        """Return, per index, whether the source has an eligible generated view (for FixedCountBatchSampler)."""
        if self.eligible is None:
            return np.ones(len(self), dtype=bool)
        return self.eligible.any_eligible(self.source_ids)

    # -- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.source_ids)

    def raw(self, index: int) -> RawSample:
        """Return sample `index` with its members still encoded."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = int(index) % len(self)
        shard = int(self.shard_of[index])
        fh = self._file(shard)
        fh.seek(int(self.offsets[index]))
        data = fh.read(int(self.lengths[index]))
        members: dict[str, Any] = {}
        try:
            if len(data) != int(self.lengths[index]):
                raise TarFormatError(f"short read: {len(data)} of {int(self.lengths[index])} bytes")
            for member in iter_tar(io.BytesIO(data)):
                members[split_member(member.name)[1].lower()] = member.data
        except (TarFormatError, OSError, ValueError) as exc:
            raise CorruptShardError(
                f"sample {index} of shard {shard_name(shard)} cannot be read (store changed since indexing?): {exc}"
            ) from None
        members["__key__"] = f"{int(self.source_ids[index]):010d}"
        return parse_sample(members, shard, self.index.k, self.index.has_source)

    def __getitem__(self, request: int | ViewRequest) -> Any:
        """Return policy(sample) for an int index or a ViewRequest (index, generated)."""
        if isinstance(request, ViewRequest):
            index, generated = request.index, bool(request.generated)
        else:
            index, generated = int(request), None
        sample = self.raw(index)
        eligible = None if self.eligible is None else self.eligible.views(sample.source_id)
        ctx = ViewContext(epoch=self.epoch, seed=self.seed, k=self.index.k, eligible=eligible, generated=generated)
        return self.policy(sample, ctx)

    def _file(self, shard: int):
        if os.getpid() != self._pid:  # forked worker: never share file positions with the parent
            self._files, self._pid = {}, os.getpid()
        fh = self._files.get(shard)
        if fh is None:
            if len(self._files) >= _MAX_OPEN_FILES:
                self._files.pop(next(iter(self._files))).close()
            fh = self._files[shard] = self.index.fs.open(self.index.entry(shard).path, "rb")
        return fh

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = {}
        return state

    def __del__(self) -> None:
        for fh in getattr(self, "_files", {}).values():
            try:
                fh.close()
            except Exception:  # noqa: BLE001 - at interpreter shutdown the file's module may be gone
                continue  # closing is best effort here; the OS closes what is left
