"""Per-shard summaries and member indexes: what readers need, written when a shard commits.

A done shard of format v2 written by this genview has, beside its done marker `stats/NNNNNN.json`:
- `stats/NNNNNN.summary.parquet`: one row per class (label) with counts and similarity aggregates
  (count, sum, sum of squares, min, max), so per-class tables add rows instead of scanning views;
- `stats/NNNNNN.index.parquet`: one row per tar member in tar order (name, offset of its first
  header, offset and size of its data), so one member or one sample is one range read;
- in the marker, a `summary` object: counts, a fixed-bin similarity histogram, the shard's lowest
  similarity views and first failed sources (`shard_summary`).
The marker is written last, so its `summary` vouches for both files. A shard without one (format
v1, or v2 written before summaries) is summarised from its manifest fragment when read
(`summarize_fragment`, the function the writer itself uses), so every reader answers the same.
"""

from __future__ import annotations

import io
import math
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genview.datastore import layout
from genview.datastore.fs import join
from genview.datastore.manifest import STATUS_FAILED, STATUS_OK
from genview.datastore.tarindex import BLOCK, TarMember

SUMMARY_VERSION = 1
#: Fixed similarity bins over [-1, 1] (cosine), width 0.001: shards' histograms add up exactly.
HIST_LO, HIST_HI, HIST_BINS = -1.0, 1.0, 2000
#: Lowest-similarity views kept per shard (the store's worst N <= this come from summaries alone).
WORST_KEPT = 32
#: Failed sources listed per shard (counts are always complete).
FAILURES_KEPT = 20
_WORST_FIELDS = ("key", "source_id", "view", "member", "label", "similarity", "shard")
_FAILURE_FIELDS = ("source_id", "source_uri", "label", "error")

CLASSES_SCHEMA = pa.schema([
    ("label", pa.string()),
    ("label_index", pa.int32()),
    ("views", pa.int64()),
    ("sources", pa.int64()),
    ("failed", pa.int64()),
    ("bytes", pa.int64()),
    ("sim_count", pa.int64()),
    ("sim_sum", pa.float64()),
    ("sim_sumsq", pa.float64()),
    ("sim_min", pa.float32()),
    ("sim_max", pa.float32()),
])

INDEX_SCHEMA = pa.schema([
    ("member", pa.string()),
    ("header", pa.int64()),  # offset of the member's first header block (pax / long-name headers included)
    ("offset", pa.int64()),  # offset of its data
    ("size", pa.int64()),
])


def summary_path(root: str, shard: int) -> str:
    """Path of a shard's per-class summary."""
    return join(root, layout.STATS_DIR, layout.shard_name(shard) + ".summary.parquet")


def index_path(root: str, shard: int) -> str:
    """Path of a shard's tar member index."""
    return join(root, layout.STATS_DIR, layout.shard_name(shard) + ".index.parquet")


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


# -- the histogram -------------------------------------------------------------------------
def histogram_counts(values: np.ndarray) -> np.ndarray:
    """Counts of finite similarities in the fixed bins (values outside [-1, 1] land in the end bins)."""
    values = values[np.isfinite(values)]
    clipped = np.clip(values.astype(np.float64), HIST_LO, HIST_HI)
    counts, _ = np.histogram(clipped, bins=HIST_BINS, range=(HIST_LO, HIST_HI))
    return counts.astype(np.int64)


def pack_histogram(counts: np.ndarray) -> dict[str, Any]:
    """A histogram as JSON: the first non-empty bin and the counts from there to the last non-empty one."""
    nonzero = np.flatnonzero(counts)
    if not len(nonzero):
        return {"lo": HIST_LO, "hi": HIST_HI, "bins": HIST_BINS, "first": 0, "counts": []}
    first, last = int(nonzero[0]), int(nonzero[-1])
    return {"lo": HIST_LO, "hi": HIST_HI, "bins": HIST_BINS, "first": first, "counts": counts[first:last + 1].tolist()}


def unpack_histogram(packed: dict[str, Any]) -> np.ndarray:
    """The full fixed-bin counts of a packed histogram."""
    if (packed.get("lo"), packed.get("hi"), packed.get("bins")) != (HIST_LO, HIST_HI, HIST_BINS):
        raise ValueError(f"histogram bins {packed.get('lo')}..{packed.get('hi')} x{packed.get('bins')} are not this genview's")
    counts = np.zeros(HIST_BINS, dtype=np.int64)
    values = np.asarray(packed["counts"], dtype=np.int64)
    counts[packed["first"]:packed["first"] + len(values)] = values
    return counts


def histogram_quantile(counts: np.ndarray, q: float, lo: float | None = None, hi: float | None = None) -> float | None:
    """The q-quantile of binned values, linear within its bin (error below one bin, 0.001), clamped to [lo, hi]."""
    total = int(counts.sum())
    if total == 0:
        return None
    width = (HIST_HI - HIST_LO) / HIST_BINS
    target = q * (total - 1)  # the rank numpy's linear quantile interpolates at
    cumulative = np.cumsum(counts)
    i = int(np.searchsorted(cumulative, target, side="right"))
    before = cumulative[i - 1] if i else 0
    value = HIST_LO + width * (i + (target - before + 0.5) / counts[i])
    if lo is not None:
        value = max(value, lo)
    if hi is not None:
        value = min(value, hi)
    return value


# -- one shard ------------------------------------------------------------------------------
def _finite_similarity(table: pa.Table) -> pa.Array:
    sim = table.column("similarity")
    return pc.if_else(pc.is_nan(sim).fill_null(False), None, sim)  # NaN counts as "no score", like null


def summarize_fragment(fragment: pa.Table, shard: int) -> tuple[dict[str, Any], pa.Table]:
    """Return (the marker's `summary` object, the per-class table) of one shard's manifest rows."""
    ok_mask = pc.equal(fragment.column("status"), STATUS_OK).fill_null(False)
    failed_mask = pc.equal(fragment.column("status"), STATUS_FAILED).fill_null(False)
    ok = fragment.filter(ok_mask)
    failed = fragment.filter(failed_mask)
    sim = _finite_similarity(fragment).cast(pa.float64())
    ok_sim = pc.if_else(ok_mask, sim, None)
    work = pa.table({
        "label": fragment.column("label"),
        "label_index": fragment.column("label_index"),
        "ok": ok_mask.cast(pa.int64()),
        "failed": failed_mask.cast(pa.int64()),
        "ok_source": pc.if_else(ok_mask, fragment.column("source_id"), None),
        "ok_bytes": pc.if_else(ok_mask, fragment.column("bytes"), None),
        "sim": ok_sim,
        "sim2": pc.multiply(ok_sim, ok_sim),
    })
    grouped = work.group_by("label").aggregate([
        ("label_index", "min"), ("ok", "sum"), ("ok_source", "count_distinct", pc.CountOptions("only_valid")),
        ("failed", "sum"), ("ok_bytes", "sum"), ("sim", "count"), ("sim", "sum"), ("sim2", "sum"),
        ("sim", "min"), ("sim", "max"),
    ])
    classes = pa.table({
        "label": grouped.column("label"),
        "label_index": grouped.column("label_index_min"),
        "views": grouped.column("ok_sum").fill_null(0),
        "sources": grouped.column("ok_source_count_distinct"),
        "failed": grouped.column("failed_sum").fill_null(0),
        "bytes": grouped.column("ok_bytes_sum").fill_null(0),
        "sim_count": grouped.column("sim_count"),
        "sim_sum": grouped.column("sim_sum").fill_null(0.0),
        "sim_sumsq": grouped.column("sim2_sum").fill_null(0.0),
        "sim_min": grouped.column("sim_min"),
        "sim_max": grouped.column("sim_max"),
    }).cast(CLASSES_SCHEMA).sort_by([("label", "ascending")])

    ok_values = pc.drop_null(_finite_similarity(ok)).to_numpy(zero_copy_only=False)
    worst_order = pc.sort_indices(ok, sort_keys=[("similarity", "ascending"), ("source_id", "ascending"), ("view", "ascending")])  # nulls (no score) sort last by default
    worst = ok.take(worst_order[:WORST_KEPT]).select(list(_WORST_FIELDS)).to_pylist()
    summary = {
        "version": SUMMARY_VERSION,
        "views": ok.num_rows,
        "ok_sources": pc.count_distinct(ok.column("source_id")).as_py() if ok.num_rows else 0,
        "failed_sources": failed.num_rows,
        "bytes": int(pc.sum(ok.column("bytes")).as_py() or 0),
        "similarity": {
            "count": int(len(ok_values)),
            "sum": float(ok_values.astype(np.float64).sum()) if len(ok_values) else 0.0,
            "min": float(ok_values.min()) if len(ok_values) else None,
            "max": float(ok_values.max()) if len(ok_values) else None,
            "hist": pack_histogram(histogram_counts(ok_values)),
        },
        "worst": [row for row in worst if row["similarity"] is not None and not math.isnan(row["similarity"])],
        "failures": failed.select(list(_FAILURE_FIELDS)).slice(0, FAILURES_KEPT).to_pylist(),
        "classes": f"{layout.STATS_DIR}/{layout.shard_name(shard)}.summary.parquet",
        "member_index": f"{layout.STATS_DIR}/{layout.shard_name(shard)}.index.parquet",
    }
    return summary, classes


def classes_bytes(classes: pa.Table) -> bytes:
    """A per-class summary as parquet bytes."""
    return _parquet_bytes(classes)


def has_summary(marker: dict[str, Any] | None) -> bool:
    """True when a done marker carries a summary this genview reads (its files were written before it)."""
    summary = (marker or {}).get("summary")
    return isinstance(summary, dict) and summary.get("version") == SUMMARY_VERSION


# -- the member index -----------------------------------------------------------------------
def index_table(members: Iterable[TarMember]) -> pa.Table:
    """The member index of a tar from its members (name, header offset, data offset, size)."""
    members = list(members)
    return pa.table({
        "member": pa.array([m.name for m in members], pa.string()),
        "header": pa.array([m.start for m in members], pa.int64()),
        "offset": pa.array([m.data_offset for m in members], pa.int64()),
        "size": pa.array([m.size for m in members], pa.int64()),
    }, schema=INDEX_SCHEMA)


def index_bytes(table: pa.Table) -> bytes:
    """A member index as parquet bytes."""
    return _parquet_bytes(table)


def sample_spans(index: pa.Table) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, byte start, byte length) of every sample of a tar from its member index.

    A sample is the contiguous run of members sharing a key (as webdataset groups them: the name
    up to its first dot; genview's writer puts no folders in member names); its range runs from its
    first member's first header to the end of its last member's padded data. Vectorised: no
    Python object per member.
    """
    if index.num_rows == 0:
        return [], np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = pc.list_element(pc.split_pattern(index.column("member"), ".", max_splits=1), 0).combine_chunks()
    changed = np.ones(len(keys), dtype=bool)
    if len(keys) > 1:
        changed[1:] = np.asarray(pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1)))
    first = np.flatnonzero(changed)
    last = np.append(first[1:], len(keys)) - 1
    headers = index.column("header").to_numpy()
    ends = index.column("offset").to_numpy() + -(-index.column("size").to_numpy() // BLOCK) * BLOCK
    start = headers[first].astype(np.int64)
    return keys.take(pa.array(first)).to_pylist(), start, (ends[last] - start).astype(np.int64)


def load_member_index(fs, root: str, shard: int, marker: dict[str, Any] | None = None) -> pa.Table:
    """A done shard's member index (INDEX_SCHEMA): its index file when the marker vouches for one, else read from the tar's headers.

    `marker` is the shard's parsed done marker (read here when None).
    """
    from genview.datastore.fs import read_parquet
    from genview.datastore.tarindex import iter_tar

    if marker is None:
        import json

        from genview.datastore.store import find_done_marker

        path = find_done_marker(fs, root, shard)
        marker = json.loads(fs.cat_file(path)) if path else None
    if has_summary(marker):
        return read_parquet(fs, join(root, marker["summary"]["member_index"]))
    with fs.open(layout.shard_tar(root, shard), "rb") as stream:  # older shards: a header scan
        return index_table(iter_tar(stream, read_data=False, seekable=True))
