"""Where quality results live in a store and how to read them back (no torch: inspect and the trainer client use it).

    OUT/quality/quality.json        settings, weights (id, sha256, random) of every network used, summary
    OUT/quality/classes.parquet     one row per class (scope "class") and one overall (scope "all")
    OUT/quality/views.parquet       one row per generated view
    OUT/quality/features/NNNNNN.npz per-shard features (the resumable unit of work)
    OUT/quality/done/NNNNNN.json    per-shard done marker, written last
"""

from __future__ import annotations

import io
import json
import posixpath
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from genview.datastore import layout

QUALITY_DIR = layout.QUALITY_DIR
SETTINGS_FILE = "quality.json"
CLASSES_FILE = "classes.parquet"
VIEWS_FILE = "views.parquet"
FEATURES_DIR = "features"
DONE_DIR = "done"
#: Per-class metrics a rule or an ordering may name (classes.parquet columns).
CLASS_METRICS = ("fid", "kid", "nn_corruption", "nn_corruption_sources", "independent", "diversity", "similarity")
#: Per-view metrics (views.parquet columns).
VIEW_METRICS = ("independent", "nn_corruption", "diversity", "similarity")

CLASSES_SCHEMA = pa.schema(
    [
        ("scope", pa.string()),
        ("label", pa.string()),
        ("sources", pa.int64()),
        ("views", pa.int64()),
        ("fid", pa.float64()),
        ("kid", pa.float64()),
        ("kid_std", pa.float64()),
        ("nn_corruption", pa.float64()),
        ("nn_corruption_sources", pa.float64()),
        ("independent", pa.float64()),
        ("diversity", pa.float64()),
        ("similarity", pa.float64()),
    ]
)
VIEWS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source_id", pa.int64()),
        ("shard", pa.int32()),
        ("view", pa.int32()),
        ("label", pa.string()),
        ("similarity", pa.float32()),
        ("independent", pa.float32()),
        ("nn_corruption", pa.float32()),
        ("diversity", pa.float32()),
    ]
)


def quality_path(root: str, *parts: str) -> str:
    """Path of a quality file inside a store root."""
    return posixpath.join(root, QUALITY_DIR, *parts)


def features_path(root: str, shard: int) -> str:
    """Path of a shard's feature file."""
    return quality_path(root, FEATURES_DIR, f"{int(shard):06d}.npz")


def done_path(root: str, shard: int) -> str:
    """Path of a shard's quality done marker."""
    return quality_path(root, DONE_DIR, f"{int(shard):06d}.json")


def table_bytes(table: pa.Table) -> bytes:
    """Serialise a table to parquet bytes."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _read_parquet(fs: fsspec.AbstractFileSystem, path: str) -> pa.Table | None:
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        return pq.read_table(fh)


def read_settings(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, Any] | None:
    """Return quality/quality.json, or None when quality was never measured."""
    path = quality_path(root, SETTINGS_FILE)
    return json.loads(fs.cat_file(path)) if fs.exists(path) else None


def read_classes(fs: fsspec.AbstractFileSystem, root: str) -> pa.Table | None:
    """Return quality/classes.parquet, or None when `genview quality` has not finished on this store."""
    return _read_parquet(fs, quality_path(root, CLASSES_FILE))


def read_views(fs: fsspec.AbstractFileSystem, root: str) -> pa.Table | None:
    """Return quality/views.parquet, or None when `genview quality` has not finished on this store."""
    return _read_parquet(fs, quality_path(root, VIEWS_FILE))


def class_rows(classes: pa.Table, order: str | None = None) -> list[dict[str, Any]]:
    """Return the per-class rows (scope "class"), worst first by `order` (a metric), else by label."""
    rows = [r for r in classes.to_pylist() if r["scope"] == "class"]
    if order is None:
        return sorted(rows, key=lambda r: str(r["label"]))
    if order not in CLASS_METRICS:
        raise ValueError(f"cannot order by {order!r}; metrics: {', '.join(CLASS_METRICS)}")
    # Worst first: high FID / KID / corruption are bad; low similarity, independent score, diversity are bad.
    descending = order in ("fid", "kid", "nn_corruption", "nn_corruption_sources")
    present = [r for r in rows if r[order] is not None and r[order] == r[order]]
    missing = [r for r in rows if r not in present]
    present.sort(key=lambda r: r[order], reverse=descending)
    return present + missing
