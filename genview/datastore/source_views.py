"""Per-source similarity table of a store, for pages and pictures that sort and filter sources.

One projected, filtered scan of the manifest (source_id, shard, view, similarity, label of ok rows)
fills fixed arrays indexed by the source's place in sources.parquet: a [sources, K] float32 matrix
of similarities (NaN: no view), the shard and a class code per source. At ImageNet shape (1.28 M
sources, K=10) that is about 70 MB, whatever the manifest's size; shards committed later are
added by scanning only their fragments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from genview.datastore import layout
from genview.datastore.fs import arrow_filesystem, join, read_parquet
from genview.datastore.manifest import MANIFEST_SCHEMA, STATUS_OK

_SCAN_COLUMNS = ["source_id", "shard", "view", "similarity", "label"]


def manifest_dataset(fs, root: str, shards: Iterable[int], dictionary_columns: Iterable[str] = ()) -> pads.Dataset:
    """The manifest fragments of the given shards as one dataset, for projected, filtered scans.

    `dictionary_columns` are read dictionary-encoded (a class label is then one small integer a row).
    """
    paths = [layout.shard_manifest(root, s) for s in sorted(shards)]
    columns = list(dictionary_columns)
    schema = MANIFEST_SCHEMA
    for name in columns:
        schema = schema.set(schema.get_field_index(name), pa.field(name, pa.dictionary(pa.int32(), pa.string())))
    parquet = pads.ParquetFileFormat(read_options=pads.ParquetReadOptions(dictionary_columns=columns)) if columns else "parquet"
    return pads.dataset(paths, format=parquet, filesystem=arrow_filesystem(fs), schema=schema)


@dataclass
class Page:
    """One page of sources: their positions in the table, the matching total, each one's worst similarity."""

    rows: np.ndarray
    total: int
    worst: list[float | None]


class SourceViews:
    """Similarities of every ok source of the done shards added, by source."""

    def __init__(self, fs, root: str, k: int):
        self.fs, self.root, self.k = fs, root, int(k)
        self.ids = np.zeros(0, dtype=np.int64)  # sorted source ids of sources.parquet
        self.sims = np.zeros((0, self.k), dtype=np.float32)
        self.shard = np.zeros(0, dtype=np.int32)
        self.label = np.zeros(0, dtype=np.int32)  # code into self.labels; -1: no label
        self.present = np.zeros(0, dtype=bool)  # has ok views in a done shard
        self.labels: list[str] = []
        self._codes: dict[str, int] = {}
        self._orders: dict[str, np.ndarray] = {}

    # -- building ---------------------------------------------------------------------------
    def _grow(self) -> None:
        """Re-read the planned source ids (a store that grew has more) and move what is known to their new places."""
        ids = np.sort(read_parquet(self.fs, join(self.root, layout.SOURCES_FILE), columns=["source_id"]).column("source_id").to_numpy(zero_copy_only=False).astype(np.int64))
        if len(ids) == len(self.ids) and np.array_equal(ids, self.ids):
            return
        place = np.searchsorted(ids, self.ids)
        sims = np.full((len(ids), self.k), np.nan, dtype=np.float32)
        shard = np.full(len(ids), -1, dtype=np.int32)
        label = np.full(len(ids), -1, dtype=np.int32)
        present = np.zeros(len(ids), dtype=bool)
        sims[place], shard[place], label[place], present[place] = self.sims, self.shard, self.label, self.present
        self.ids, self.sims, self.shard, self.label, self.present = ids, sims, shard, label, present

    def _label_codes(self, labels: pa.Array) -> np.ndarray:
        encoded = labels.dictionary_encode() if not pa.types.is_dictionary(labels.type) else labels
        mapping = np.empty(len(encoded.dictionary), dtype=np.int32)
        for i, name in enumerate(encoded.dictionary.to_pylist()):
            code = self._codes.get(name)
            if code is None:
                code = self._codes[name] = len(self.labels)
                self.labels.append(name)
            mapping[i] = code
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        valid = np.asarray(encoded.indices.is_valid()) if encoded.indices.null_count else np.ones(len(indices), bool)
        out = np.full(len(indices), -1, dtype=np.int32)
        if len(mapping):
            out[valid] = mapping[indices[valid].astype(np.int64)]
        return out

    def add_shards(self, shards: Iterable[int]) -> None:
        """Scan the ok rows of these done shards' fragments (5 columns) into the table."""
        shards = sorted(shards)
        if not shards:
            return
        self._grow()
        dataset = manifest_dataset(self.fs, self.root, shards, dictionary_columns=["label"])
        dense = len(self.ids) and self.ids[0] == 0 and self.ids[-1] == len(self.ids) - 1  # ids 0..N-1: an id is its row
        for batch in dataset.to_batches(columns=_SCAN_COLUMNS, filter=pc.field("status") == STATUS_OK, batch_size=1 << 16):
            if not batch.num_rows:
                continue
            ids = batch.column("source_id").to_numpy(zero_copy_only=False).astype(np.int64)
            rows = ids if dense else np.searchsorted(self.ids, ids)
            if len(rows) and (rows.min() < 0 or rows.max() >= len(self.ids) or not (dense or np.array_equal(self.ids[rows], ids))):
                raise ValueError(f"{self.root}: manifest has source ids that sources.parquet does not list")
            views = batch.column("view").to_numpy(zero_copy_only=False).astype(np.int64)
            if len(views) and (views.min() < 0 or views.max() >= self.k):
                raise ValueError(f"{self.root}: manifest has view numbers outside 0..{self.k - 1}")
            sim = batch.column("similarity").to_numpy(zero_copy_only=False).astype(np.float32)
            self.sims[rows, views] = sim  # a null similarity arrives as NaN: a view without a score
            self.shard[rows] = batch.column("shard").to_numpy(zero_copy_only=False).astype(np.int32)
            self.label[rows] = self._label_codes(batch.column("label"))
            self.present[rows] = True
        self._orders.clear()

    # -- queries ----------------------------------------------------------------------------
    def code(self, label: str | None) -> int | None:
        """The code of a label (-2 for one the store does not have: nothing matches)."""
        return None if label is None else self._codes.get(label, -2)

    def page(self, sort: str, start: int, count: int, label: str | None = None,
             min_sim: float | None = None, max_sim: float | None = None) -> Page:
        """Sources in `sort` order ('worst' / 'best' by their lowest similarity, 'source' by id), one slice.

        With a similarity range only views inside it count (a source is listed when one is, and
        ranked by its lowest one inside); with a label only that class's sources.
        """
        ranged = min_sim is not None or max_sim is not None
        if not ranged and label is None:  # the whole store's orders, computed once per change
            cached = self._orders.get(sort)
            if cached is None:
                rows = np.flatnonzero(self.present)
                lowest = self._lowest(rows)
                order = _order(lowest, sort)
                cached = self._orders[sort] = (rows[order], lowest[order])
            rows, lowest = cached
            return Page(rows[start:start + count], len(rows), _floats(lowest[start:start + count]))
        rows = np.flatnonzero(self.present)
        if label is not None:
            rows = rows[self.label[rows] == self.code(label)]
        if ranged:
            sims = self.sims[rows].astype(np.float64)  # compared as the manifest query compares: in double
            with np.errstate(invalid="ignore"):
                inside = ~np.isnan(sims)
                if min_sim is not None:
                    inside &= sims >= min_sim
                if max_sim is not None:
                    inside &= sims <= max_sim
            keep = inside.any(axis=1)
            rows = rows[keep]
            lowest = np.where(inside[keep], sims[keep], np.inf).min(axis=1)
        else:
            lowest = self._lowest(rows)
        chosen = _order(lowest, sort)[start:start + count]
        return Page(rows[chosen], len(rows), _floats(lowest[chosen]))

    def _lowest(self, rows: np.ndarray) -> np.ndarray:
        """Each row's lowest similarity (NaN when none of its views has one)."""
        sims = self.sims[rows]
        missing = np.isnan(sims)
        lowest = np.where(missing, np.inf, sims).min(axis=1) if len(rows) else np.zeros(0, np.float32)
        return np.where(missing.all(axis=1), np.nan, lowest).astype(np.float32) if len(rows) else lowest


def _order(lowest: np.ndarray, sort: str) -> np.ndarray:
    """Positions in `sort` order; rows are in source id order already, so a stable sort breaks ties by id."""
    if sort == "source":
        return np.arange(len(lowest))
    return np.argsort(lowest if sort == "worst" else -lowest, kind="stable")  # NaN (no score) last either way


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]
