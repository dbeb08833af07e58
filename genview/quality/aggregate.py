"""From per-shard features to the store's quality tables (per view, per source, per class, overall), streamed.

Whatever the store's size, the measured shards' feature files are read in two passes:

1. shard by shard: each view's independent score (its scorer embedding against its source's), each
   source's diversity (its K views' Inception features) and each view's similarity (the shard's
   manifest fragment). The features needed again later are spilled to memory-mapped row files
   (spill.py): the sources' condition and Inception features and the views' Inception features.
2. neighbourhoods: each source's k nearest other sources (NN corruption and soft labels, over the
   spilled condition features), then shard by shard again each view's k nearest sources, reading
   only the views' condition features; that completes the shard's rows of views.parquet.

FID and KID per class then read only that class's rows of the spilled features; the overall ones
stream every row in batches (FID keeps running sums, KID reads only the subsets it draws). What
stays in memory is a few numbers per view and the sources' k neighbours, never a feature matrix of
the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genview.console_progress import progress_bar
from genview.datastore import layout
from genview.datastore.manifest import STATUS_OK
from genview.quality import knn, metrics, soft_labels, tables
from genview.quality.spill import RowSubset, SpilledRows

#: Views whose neighbours are searched in one call: when the sources do not stay on the device
#: (knn.RESIDENT_BYTES), every call streams all of them, so queries are gathered across shards.
VIEW_QUERY_ROWS = 32768
#: Features spilled for the later steps: (array in a shard's feature file, spilled array, rows are views?).
SPILLED = (("src_condition", False), ("src_inception", False), ("view_inception", True))


@dataclasses.dataclass
class QualityTables:
    """What the tables step produced; views.parquet is a local file in the spill folder (it has a row per view)."""

    classes: pa.Table
    views_file: str
    sources: pa.Table
    overall: dict[str, Any]


@dataclasses.dataclass
class _Counts:
    shard: int
    sources: int
    views: int


@contextlib.contextmanager
def _features(store: Any, shard: int) -> Iterator[Any]:
    """A shard's feature file opened lazily: each array is read from the store only when it is asked for."""
    with store.fs.open(tables.features_path(store.root, shard), "rb") as fh, np.load(fh, allow_pickle=False) as data:
        yield data


def _shard_counts(store: Any, shards: list[int]) -> list[_Counts]:
    """Sources and views of each measured shard, from its quality done marker (a small JSON file)."""
    counts = []
    for shard in shards:
        marker = json.loads(store.fs.cat_file(tables.done_path(store.root, shard)))
        counts.append(_Counts(shard, int(marker["sources"]), int(marker["views"])))
    return counts


def _similarities(store: Any, shard: int, source_ids: np.ndarray, views: np.ndarray) -> np.ndarray:
    """Each view's similarity to its source, from the shard's own manifest fragment (NaN where it has none)."""
    with store.fs.open(layout.shard_manifest(store.root, shard), "rb") as fh:
        fragment = pq.read_table(fh, columns=["source_id", "view", "similarity", "status"])
    fragment = fragment.filter(pc.equal(fragment["status"], STATUS_OK))
    recorded = {(s, v): sim for s, v, sim in zip(fragment["source_id"].to_pylist(), fragment["view"].to_pylist(),
                                                  fragment["similarity"].to_pylist())}
    return np.asarray([recorded.get((int(s), int(v))) for s, v in zip(source_ids, views)], dtype=np.float64)


def _groups(keys: np.ndarray) -> list[np.ndarray]:
    """Indices of equal keys, one sorted array per key (keys in increasing order)."""
    order = np.argsort(keys, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(keys[order])) + 1) if len(order) else []


@dataclasses.dataclass
class _PerRow:
    """Numbers kept per source and per view between the passes (no features)."""

    src_ids: np.ndarray
    labels: np.ndarray  # str per source ("(none)" when unlabelled)
    diversity: np.ndarray
    first_view: np.ndarray  # row of the source's lowest-numbered view, -1 when it has none
    view_src_row: np.ndarray
    view_source_id: np.ndarray
    view: np.ndarray
    view_shard: np.ndarray
    similarity: np.ndarray
    independent: np.ndarray

    @classmethod
    def allocate(cls, sources: int, views: int) -> "_PerRow":
        return cls(
            src_ids=np.zeros(sources, np.int64), labels=np.empty(sources, object),
            diversity=np.full(sources, np.nan, np.float32), first_view=np.full(sources, -1, np.int64),
            view_src_row=np.zeros(views, np.int64), view_source_id=np.zeros(views, np.int64),
            view=np.zeros(views, np.int32), view_shard=np.zeros(views, np.int32),
            similarity=np.full(views, np.nan, np.float64), independent=np.full(views, np.nan, np.float32),
        )


def _read_shard(store: Any, c: _Counts, s0: int, v0: int, rows: _PerRow, spill: SpilledRows) -> None:
    """Pass 1 for one shard: its per-row numbers, and its features spilled at rows s0.. (sources) and v0.. (views)."""
    with _features(store, c.shard) as data:
        src_ids = data["source_id"]
        view_sid, view_idx = data["view_source_id"], data["view"]
        if len(src_ids) != c.sources or len(view_sid) != c.views:
            raise ValueError(f"quality shard {c.shard:06d}: its features hold {len(src_ids)} sources and {len(view_sid)} "
                             f"views, its done marker says {c.sources} and {c.views}; rerun with --overwrite")
        order = np.argsort(src_ids, kind="stable")
        local = order[np.searchsorted(src_ids[order], view_sid)]  # each view's source, as a row of this shard
        rows.src_ids[s0 : s0 + c.sources] = src_ids
        rows.labels[s0 : s0 + c.sources] = data["label"].astype(object)
        rows.view_src_row[v0 : v0 + c.views] = s0 + local
        rows.view_source_id[v0 : v0 + c.views] = view_sid
        rows.view[v0 : v0 + c.views] = view_idx
        rows.view_shard[v0 : v0 + c.views] = c.shard
        rows.similarity[v0 : v0 + c.views] = _similarities(store, c.shard, view_sid, view_idx)
        for name, per_view in SPILLED:
            array = data[name]
            if not spill.has(name):
                spill.allocate(name, len(rows.view) if per_view else len(rows.src_ids), array.shape[1])
            spill.write(name, v0 if per_view else s0, array)
        if "view_scorer" in data.files:
            rows.independent[v0 : v0 + c.views] = metrics.row_cosine(data["view_scorer"], data["src_scorer"][local])
        view_inception = data["view_inception"]
        for members in _groups(local):
            src_row = s0 + local[members[0]]
            # Diversity: mean pairwise distance among the K views of one source (Inception pool features).
            rows.diversity[src_row] = metrics.mean_pairwise_distance(view_inception[members])
            # One view per source for FID (its lowest view number; the first such row), as DA IC-GAN used equal counts.
            rows.first_view[src_row] = v0 + members[np.argmin(view_idx[members])]


def _nan_to_none(row: dict[str, Any]) -> dict[str, Any]:
    """NaN -> null in parquet, so every reader sees "not measurable" the same way."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}


def _safe(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run a metric; NaN where a class is too small for it (fewer than 2 samples)."""
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return float("nan")


def _mean(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def build_tables(
    store: Any, shards: list[int], spill: SpilledRows, k_nn: int, fid_views: str = "one", kid_subsets: int = 100,
    label_index: tuple[np.ndarray, np.ndarray] | None = None, device: str = "cpu", progress: bool = True,
    log: Callable[[str], None] = lambda text: None,
) -> QualityTables:
    """Return the quality tables of the measured `shards` of `store`, spilling features into `spill`.

    ``label_index``: (source ids sorted, their label index) from the store's sources.parquet, for the soft labels.
    """
    if fid_views not in ("one", "all"):
        raise ValueError(f"fid_views must be 'one' or 'all', got {fid_views!r}")
    counts = [c for c in _shard_counts(store, shards) if c.sources]
    n_src, n_views = sum(c.sources for c in counts), sum(c.views for c in counts)
    if not n_src:
        raise ValueError("no generated views to measure: the store has no done shard with ok sources")
    rows = _PerRow.allocate(n_src, n_views)
    offsets, s0, v0 = [], 0, 0
    with progress_bar(len(counts), "quality tables: reading features", "shards", enabled=progress) as bar:
        for c in counts:
            _read_shard(store, c, s0, v0, rows, spill)
            offsets.append((c, s0, v0))
            s0, v0 = s0 + c.sources, v0 + c.views
            bar.update(1)
    spill.read_only()
    log(f"quality: features of {n_src} sources and {n_views} views spilled to {spill.folder} "
        f"({spill.bytes_allocated() / 2**30:.2f} GiB)")
    names, codes = np.unique(rows.labels.astype(str), return_inverse=True)
    condition = spill["src_condition"]

    # DA IC-GAN §4.1 NN corruption: "the percentage of images in each datapoint's neighborhood that has a different
    # class than the datapoint itself ... averaged for all datapoints in a given class". The neighbourhood is the
    # source's k nearest other sources in the conditioning space (ic_gan drops the point itself), which also gives
    # Eq. 2's soft label.
    if n_src > 1:
        log(f"quality: {k_nn} nearest sources of each of {n_src} sources")
        src_neighbours = knn.nearest(condition, condition, k_nn, exclude_self=True, device=device)
        src_corruption = soft_labels.nn_corruption(src_neighbours, codes)
    else:
        src_neighbours, src_corruption = None, np.full(n_src, np.nan, np.float32)

    # Per view (not the paper's metric): the share of the view's k nearest sources from another class than its source.
    view_other_class = np.full(n_views, np.nan, np.float32)
    views_file = os.path.join(spill.folder, tables.VIEWS_FILE)
    with pq.ParquetWriter(views_file, tables.VIEWS_SCHEMA) as writer, \
            progress_bar(n_views, "quality tables: view neighbourhoods", "views", enabled=progress) as bar:
        pending: list[tuple[_Counts, int, np.ndarray]] = []

        def flush() -> None:
            queries = np.concatenate([q for _, _, q in pending])
            neighbours = knn.nearest(queries, condition, k_nn, device=device)
            at = 0
            for c, first, q in pending:
                own = codes[rows.view_src_row[first : first + c.views]]
                view_other_class[first : first + c.views] = (codes[neighbours[at : at + c.views]] != own[:, None]).mean(1)
                writer.write_table(_views_rows(rows, view_other_class, first, c.views, names, codes))
                at += c.views
                bar.update(c.views)
            pending.clear()

        for c, _, first in offsets:
            with _features(store, c.shard) as data:
                pending.append((c, first, np.asarray(data["view_condition"], dtype=np.float32)))
            if sum(len(q) for _, _, q in pending) >= VIEW_QUERY_ROWS:
                flush()
        if pending:
            flush()

    classes, overall = _class_rows(spill, rows, names, codes, src_corruption, view_other_class, fid_views, kid_subsets,
                                   device, progress)
    per_source = sources_table(rows.src_ids, rows.labels, src_corruption, src_neighbours, label_index)
    return QualityTables(classes, views_file, per_source, overall)


def _views_rows(rows: _PerRow, other: np.ndarray, first: int, count: int, names: np.ndarray, codes: np.ndarray) -> pa.Table:
    """One shard's rows of views.parquet."""
    part = slice(first, first + count)
    src_row = rows.view_src_row[part]
    return pa.table(
        {
            "key": pa.array([layout.sample_key(int(s)) for s in rows.view_source_id[part]], pa.string()),
            "source_id": pa.array(rows.view_source_id[part], pa.int64()),
            "shard": pa.array(rows.view_shard[part], pa.int32()),
            "view": pa.array(rows.view[part], pa.int32()),
            "label": pa.array(names[codes[src_row]].tolist(), pa.string()),
            "similarity": pa.array(rows.similarity[part], pa.float32(), from_pandas=True),
            "independent": pa.array(rows.independent[part], pa.float32(), from_pandas=True),
            "view_nn_other_class": pa.array(other[part], pa.float32()),
            "diversity": pa.array(rows.diversity[src_row], pa.float32(), from_pandas=True),
        },
        schema=tables.VIEWS_SCHEMA,
    )


def _class_rows(
    spill: SpilledRows, rows: _PerRow, names: np.ndarray, codes: np.ndarray, src_corruption: np.ndarray,
    view_other_class: np.ndarray, fid_views: str, kid_subsets: int, device: str, progress: bool,
) -> tuple[pa.Table, dict[str, Any]]:
    """FID, KID and the means per class (reading that class's rows only), then over everything."""
    src_inception, view_inception = spill["src_inception"], spill["view_inception"]

    def group(scope: str, label: str | None, src_rows: np.ndarray, view_rows: np.ndarray) -> dict[str, Any]:
        real = RowSubset(src_inception, src_rows)
        if fid_views == "one":
            first = rows.first_view[src_rows]
            fake = RowSubset(view_inception, np.sort(first[first >= 0]))
        else:
            fake = RowSubset(view_inception, view_rows)
        kid = _safe(metrics.kernel_inception_distance, real, RowSubset(view_inception, view_rows), kid_subsets,
                    device=device)
        kid_mean, kid_std = kid if isinstance(kid, tuple) else (kid, kid)
        return _nan_to_none({
            "scope": scope, "label": label, "sources": int(len(src_rows)), "views": int(len(view_rows)),
            "fid": _safe(metrics.frechet_distance, real, fake),
            "kid": kid_mean, "kid_std": kid_std,
            "nn_corruption": _mean(src_corruption[src_rows]),
            "view_nn_other_class": _mean(view_other_class[view_rows]),
            "independent": _mean(rows.independent[view_rows]),
            "diversity": _mean(rows.diversity[src_rows]),
            "similarity": _mean(rows.similarity[view_rows]),
        })

    src_groups = _groups(codes)
    view_codes = codes[rows.view_src_row]
    view_groups = dict(zip(np.unique(view_codes), _groups(view_codes)))
    out = []
    with progress_bar(len(names), "quality tables: classes", "classes", enabled=progress) as bar:
        for code, src_rows in enumerate(src_groups):
            out.append(group("class", str(names[code]), src_rows, view_groups.get(code, np.zeros(0, np.int64))))
            bar.update(1)
    overall = group("all", None, np.arange(len(rows.src_ids)), np.arange(len(rows.view_src_row)))
    out.append(overall)
    return pa.Table.from_pylist(out, schema=tables.CLASSES_SCHEMA), overall


def label_indices_of(src_ids: np.ndarray, label_index: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Each source's label index (-1 when it has none) from (sorted source ids, label index) of sources.parquet."""
    out = np.full(len(src_ids), -1, np.int64)
    if label_index is None or not len(label_index[0]):
        return out
    ids, values = label_index
    at = np.clip(np.searchsorted(ids, src_ids), 0, len(ids) - 1)
    found = ids[at] == src_ids
    out[found] = values[at[found]]
    return out


def sources_table(
    src_ids: np.ndarray, labels: np.ndarray, corruption: np.ndarray, neighbours: np.ndarray | None,
    label_index: tuple[np.ndarray, np.ndarray] | None,
) -> pa.Table:
    """Per source: its neighbourhood's NN corruption and its soft label (Eq. 2) over the store's label indices."""
    indices = label_indices_of(src_ids, label_index)
    if neighbours is None:
        soft_idx = [np.zeros(0, np.int32)] * len(src_ids)
        soft_w = [np.zeros(0, np.float32)] * len(src_ids)
    else:
        soft_idx, soft_w = soft_labels.soft_labels(neighbours, indices)
    return pa.table(
        {
            "source_id": pa.array(src_ids, pa.int64()),
            "label": pa.array(labels.tolist(), pa.string()),
            "label_index": pa.array([int(i) if i >= 0 else None for i in indices], pa.int64()),
            "nn_corruption": pa.array(corruption, pa.float32(), from_pandas=True),
            "soft_label_index": pa.array([a.tolist() for a in soft_idx], pa.list_(pa.int32())),
            "soft_label_weight": pa.array([a.tolist() for a in soft_w], pa.list_(pa.float32())),
        },
        schema=tables.SOURCES_SCHEMA,
    )
