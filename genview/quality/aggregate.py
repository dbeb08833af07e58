"""From per-shard features to the store's quality tables: per view, per class, overall."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from genview.datastore import layout
from genview.quality import knn, metrics, soft_labels, tables


def concat_features(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate the per-shard feature dicts (shards without sources are skipped)."""
    parts = [p for p in parts if len(p["source_id"])]
    if not parts:
        raise ValueError("no generated views to measure: the store has no done shard with ok sources")
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _safe(fn, *args) -> tuple[float, ...] | float:
    """Run a metric; NaN where a class is too small for it (fewer than 2 samples)."""
    try:
        return fn(*args)
    except ValueError:
        return float("nan")


def build_tables(
    feats: dict[str, np.ndarray], manifest_views: pa.Table, k_nn: int, fid_views: str = "one", kid_subsets: int = 100,
    label_index: dict[int, int] | None = None, device: str = "cpu",
) -> tuple[pa.Table, pa.Table, pa.Table, dict[str, Any]]:
    """Return (classes table, views table, sources table, overall summary) from concatenated features."""
    src_ids, labels = feats["source_id"], feats["label"].astype(object)
    row_of = {int(s): i for i, s in enumerate(src_ids)}
    view_src_row = np.asarray([row_of[int(s)] for s in feats["view_source_id"]], dtype=np.int64)
    view_labels = labels[view_src_row]
    # DA IC-GAN §4.1 NN corruption: "the percentage of images in each datapoint's neighborhood that has a different
    # class than the datapoint itself ... averaged for all datapoints in a given class". The neighbourhood is the
    # source's k nearest other sources in the conditioning space (ic_gan drops the point itself), which also gives
    # Eq. 2's soft label.
    if len(src_ids) > 1:
        src_neighbours = knn.nearest(feats["src_condition"], feats["src_condition"], k_nn, exclude_self=True, device=device)
        src_corruption = soft_labels.nn_corruption(src_neighbours, labels)
    else:
        src_neighbours, src_corruption = None, np.full(len(src_ids), np.nan, np.float32)
    # Per view (not the paper's metric): the share of the view's k nearest sources from another class than its source.
    view_neighbours = knn.nearest(feats["view_condition"], feats["src_condition"], k_nn, device=device)
    view_other_class = (labels[view_neighbours] != view_labels[:, None]).mean(axis=1).astype(np.float32)
    independent = (
        metrics.row_cosine(feats["view_scorer"], feats["src_scorer"][view_src_row]) if "view_scorer" in feats
        else np.full(len(view_src_row), np.nan, np.float32)
    )
    # Diversity: mean pairwise distance among the K views of one source (Inception pool features).
    diversity_of_src = np.full(len(src_ids), np.nan, np.float32)
    order = np.argsort(view_src_row, kind="stable")
    bounds = np.flatnonzero(np.diff(view_src_row[order])) + 1
    for chunk in np.split(order, bounds) if len(order) else []:
        diversity_of_src[view_src_row[chunk[0]]] = metrics.mean_pairwise_distance(feats["view_inception"][chunk])
    # One view per source for FID (view with the smallest index), as DA IC-GAN used equal counts.
    first_view = None
    if fid_views == "one":
        first_view = np.full(len(src_ids), -1, np.int64)
        for j in np.argsort(feats["view"], kind="stable"):
            if first_view[view_src_row[j]] < 0:
                first_view[view_src_row[j]] = j
    elif fid_views != "all":
        raise ValueError(f"fid_views must be 'one' or 'all', got {fid_views!r}")

    sim_by_view = {}
    for row in manifest_views.select(["source_id", "view", "similarity"]).to_pylist():
        sim_by_view[(row["source_id"], row["view"])] = row["similarity"]
    similarity = np.asarray(
        [sim_by_view.get((int(s), int(v))) for s, v in zip(feats["view_source_id"], feats["view"])], dtype=np.float64
    )

    def group(scope: str, label: str | None, src_mask: np.ndarray) -> dict[str, Any]:
        view_mask = src_mask[view_src_row]
        fv = first_view[src_mask] if first_view is not None else None
        if fv is not None:
            fake = feats["view_inception"][fv[fv >= 0]]
        else:
            fake = feats["view_inception"][view_mask]
        real = feats["src_inception"][src_mask]
        kid = _safe(metrics.kernel_inception_distance, real, feats["view_inception"][view_mask], kid_subsets)
        kid_mean, kid_std = kid if isinstance(kid, tuple) else (kid, kid)

        def mean(values: np.ndarray) -> float | None:
            values = values[~np.isnan(values)]
            return float(values.mean()) if len(values) else None

        return {
            "scope": scope, "label": label,
            "sources": int(src_mask.sum()), "views": int(view_mask.sum()),
            "fid": _safe(metrics.frechet_distance, real, fake),
            "kid": kid_mean, "kid_std": kid_std,
            "nn_corruption": mean(src_corruption[src_mask].astype(np.float64)),
            "view_nn_other_class": mean(view_other_class[view_mask].astype(np.float64)),
            "independent": mean(independent[view_mask].astype(np.float64)),
            "diversity": mean(diversity_of_src[src_mask].astype(np.float64)),
            "similarity": mean(similarity[view_mask]),
        }

    rows = [group("class", str(label), labels == label) for label in sorted(set(labels.tolist()))]
    overall = group("all", None, np.ones(len(src_ids), dtype=bool))
    rows.append(overall)
    for row in rows:  # NaN -> null in parquet, so every reader sees "not measurable" the same way
        for name, value in row.items():
            if isinstance(value, float) and value != value:
                row[name] = None
    classes = pa.Table.from_pylist(rows, schema=tables.CLASSES_SCHEMA)
    views = pa.table(
        {
            "key": pa.array([layout.sample_key(int(s)) for s in feats["view_source_id"]], pa.string()),
            "source_id": pa.array(feats["view_source_id"], pa.int64()),
            "shard": pa.array(feats.get("view_shard", np.zeros(len(view_src_row), np.int32)), pa.int32()),
            "view": pa.array(feats["view"], pa.int32()),
            "label": pa.array(view_labels.tolist(), pa.string()),
            "similarity": pa.array(similarity, pa.float32(), from_pandas=True),
            "independent": pa.array(independent, pa.float32(), from_pandas=True),
            "view_nn_other_class": pa.array(view_other_class, pa.float32()),
            "diversity": pa.array(diversity_of_src[view_src_row], pa.float32(), from_pandas=True),
        },
        schema=tables.VIEWS_SCHEMA,
    )
    return classes, views, sources_table(feats, labels, src_corruption, src_neighbours, label_index), overall


def sources_table(
    feats: dict[str, np.ndarray], labels: np.ndarray, corruption: np.ndarray, neighbours: np.ndarray | None,
    label_index: dict[int, int] | None,
) -> pa.Table:
    """Per source: its neighbourhood's NN corruption and its soft label (Eq. 2) over the store's label indices."""
    src_ids = feats["source_id"]
    index_of = label_index or {}
    indices = np.asarray([-1 if (li := index_of.get(int(s))) is None else li for s in src_ids], dtype=np.int64)
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
