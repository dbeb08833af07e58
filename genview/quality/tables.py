"""Where quality results live in a store and how to read them back (no torch: inspect and the trainer client use it).

    OUT/quality/quality.json        settings, weights (id, sha256, random) of every network used, summary
    OUT/quality/classes.parquet     one row per class (scope "class") and one overall (scope "all")
    OUT/quality/views.parquet       one row per generated view
    OUT/quality/sources.parquet     one row per source: its neighbourhood's NN corruption and DA IC-GAN soft label
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
SOURCES_FILE = "sources.parquet"
FEATURES_DIR = "features"
DONE_DIR = "done"
#: Per-class metrics a rule or an ordering may name (classes.parquet columns). ``nn_corruption`` is DA IC-GAN's
#: (each source's own neighbourhood, averaged per class); ``view_nn_other_class`` is the per-view score.
CLASS_METRICS = ("fid", "kid", "nn_corruption", "view_nn_other_class", "independent", "diversity", "similarity")
#: Per-view metrics (views.parquet columns).
VIEW_METRICS = ("independent", "view_nn_other_class", "diversity", "similarity")
#: Column names of stores measured before the rename: (old name -> current name), per table. Old stores called
#: the per-view score ``nn_corruption`` and DA IC-GAN's per-source metric ``nn_corruption_sources``.
_OLD_CLASS_COLUMNS = {"nn_corruption": "view_nn_other_class", "nn_corruption_sources": "nn_corruption"}
_OLD_VIEW_COLUMNS = {"nn_corruption": "view_nn_other_class"}
#: Metric names a rule may still use: the old name of DA IC-GAN's metric.
METRIC_ALIASES = {"nn_corruption_sources": "nn_corruption"}

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
        ("view_nn_other_class", pa.float64()),
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
        ("view_nn_other_class", pa.float32()),
        ("diversity", pa.float32()),
    ]
)
SOURCES_SCHEMA = pa.schema(
    [
        ("source_id", pa.int64()),
        ("label", pa.string()),
        ("label_index", pa.int64()),
        ("nn_corruption", pa.float32()),
        # DA IC-GAN Eq. 2, sparse: the label indices present in the source's k-neighbourhood and their shares.
        ("soft_label_index", pa.list_(pa.int32())),
        ("soft_label_weight", pa.list_(pa.float32())),
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


def _current_names(table: pa.Table | None, old_names: dict[str, str], marker: str) -> pa.Table | None:
    """Rename an old store's columns to today's names (a table without `marker` was written before the rename)."""
    if table is None or marker in table.column_names:
        return table
    return table.rename_columns([old_names.get(name, name) for name in table.column_names])


def read_classes(fs: fsspec.AbstractFileSystem, root: str) -> pa.Table | None:
    """Return quality/classes.parquet (old stores' column names mapped to today's), or None when not measured."""
    return _current_names(_read_parquet(fs, quality_path(root, CLASSES_FILE)), _OLD_CLASS_COLUMNS, "view_nn_other_class")


def read_views(fs: fsspec.AbstractFileSystem, root: str) -> pa.Table | None:
    """Return quality/views.parquet (old stores' column names mapped to today's), or None when not measured."""
    return _current_names(_read_parquet(fs, quality_path(root, VIEWS_FILE)), _OLD_VIEW_COLUMNS, "view_nn_other_class")


def read_sources(fs: fsspec.AbstractFileSystem, root: str) -> pa.Table | None:
    """Return quality/sources.parquet (per-source NN corruption and soft labels), or None when not measured."""
    return _read_parquet(fs, quality_path(root, SOURCES_FILE))


def class_rows(classes: pa.Table, order: str | None = None) -> list[dict[str, Any]]:
    """Return the per-class rows (scope "class"), worst first by `order` (a metric), else by label."""
    rows = [r for r in classes.to_pylist() if r["scope"] == "class"]
    if order is None:
        return sorted(rows, key=lambda r: str(r["label"]))
    if order not in CLASS_METRICS:
        raise ValueError(f"cannot order by {order!r}; metrics: {', '.join(CLASS_METRICS)}")
    # Worst first: high FID / KID / corruption are bad; low similarity, independent score, diversity are bad.
    descending = order in ("fid", "kid", "nn_corruption", "view_nn_other_class")
    present = [r for r in rows if r[order] is not None and r[order] == r[order]]
    missing = [r for r in rows if r not in present]
    present.sort(key=lambda r: r[order], reverse=descending)
    return present + missing
