"""The streamed tables step (spilled features, per-class reads) equals the same figures computed on whole arrays."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from genview.datastore.store import Store
from genview.quality import metrics, tables
from genview.quality.extract import load_features
from genview.quality.spill import RowSubset
from quality_consts import K_NN


def _whole_store(path) -> dict[str, np.ndarray]:
    """Every measured shard's features concatenated in memory (what the tables step no longer does)."""
    store = Store(str(path))
    parts = [load_features(store, s) for s in sorted(store.done_shards())]
    parts = [p for p in parts if len(p["source_id"])]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _brute_neighbours(queries: np.ndarray, base: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ b.T.astype(np.float64)
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def _torchmetrics_kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100) -> tuple[float, float]:
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(1000, len(real), len(fake))
    subsets = subsets if size < max(len(real), len(fake)) else 1
    metric = KernelInceptionDistance(feature=metrics._Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(torch.as_tensor(real, dtype=torch.float64), real=True)
    metric.update(torch.as_tensor(fake, dtype=torch.float64), real=False)
    torch.manual_seed(0)
    mean, std = metric.compute()
    return float(mean), float(std)


def test_streamed_tables_equal_whole_array_figures(measured):
    path, _ = measured  # measured with --fid-views all, --k-nn K_NN
    feats = _whole_store(path)
    labels = feats["label"]
    row_of = {int(s): i for i, s in enumerate(feats["source_id"])}
    view_row = np.asarray([row_of[int(s)] for s in feats["view_source_id"]])
    view_labels = labels[view_row]

    src_nn = _brute_neighbours(feats["src_condition"], feats["src_condition"], K_NN, exclude_self=True)
    corruption = (labels[src_nn] != labels[:, None]).mean(1)
    view_nn = _brute_neighbours(feats["view_condition"], feats["src_condition"], K_NN, exclude_self=False)
    other = (labels[view_nn] != view_labels[:, None]).mean(1)

    views = pq.read_table(path / "quality" / tables.VIEWS_FILE).to_pydict()
    np.testing.assert_array_equal(views["source_id"], feats["view_source_id"])
    np.testing.assert_allclose(views["view_nn_other_class"], other, rtol=1e-6)
    independent = metrics.row_cosine(feats["view_scorer"], feats["src_scorer"][view_row])
    np.testing.assert_allclose(views["independent"], independent, rtol=1e-5)
    sources = pq.read_table(path / "quality" / tables.SOURCES_FILE).to_pydict()
    np.testing.assert_array_equal(sources["source_id"], feats["source_id"])
    np.testing.assert_allclose(sources["nn_corruption"], corruption, rtol=1e-6)

    classes = {r["label"]: r for r in pq.read_table(path / "quality" / tables.CLASSES_FILE).to_pylist()}
    for label in sorted(set(labels.tolist())) + [None]:
        src_mask = np.ones(len(labels), bool) if label is None else labels == label
        view_mask = src_mask[view_row]
        real, fake = feats["src_inception"][src_mask], feats["view_inception"][view_mask]
        row = classes[label]
        assert row["sources"] == src_mask.sum() and row["views"] == view_mask.sum()
        assert row["fid"] == pytest.approx(metrics.frechet_distance(real, fake), rel=1e-9)  # vs scipy: test_quality_metrics
        kid_mean, kid_std = _torchmetrics_kid(real, fake)
        assert row["kid"] == pytest.approx(kid_mean, rel=1e-9, abs=1e-12)
        assert row["kid_std"] == pytest.approx(kid_std, rel=1e-9, abs=1e-12)
        assert row["nn_corruption"] == pytest.approx(corruption[src_mask].mean(), rel=1e-6)
        assert row["view_nn_other_class"] == pytest.approx(other[view_mask].mean(), rel=1e-6)
        assert row["independent"] == pytest.approx(independent[view_mask].mean(), rel=1e-5)


def test_kid_reads_only_its_subsets_and_equals_torchmetrics(tmp_path):
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(70, 6)), rng.normal(0.3, 1.0, size=(55, 6))
    expected = _torchmetrics_kid(real, fake, subsets=7)
    # The same figure from memory-mapped rows seen through a row subset (what the tables step passes).
    np.save(tmp_path / "f.npy", np.concatenate([fake, real]))
    mapped = np.load(tmp_path / "f.npy", mmap_mode="r")
    got = metrics.kernel_inception_distance(RowSubset(mapped, np.arange(55, 125)), RowSubset(mapped, np.arange(55)), 7)
    assert got == pytest.approx(expected, rel=1e-12)


def test_fid_from_a_memory_map_in_batches_equals_one_update(tmp_path):
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(40, 5)), rng.normal(0.2, 1.1, size=(33, 5))
    np.save(tmp_path / "r.npy", real)
    mapped = np.load(tmp_path / "r.npy", mmap_mode="r")
    assert metrics.fid_torchmetrics(mapped, fake, batch=7) == pytest.approx(metrics.fid_torchmetrics(real, fake), rel=1e-9)


def test_blocked_knn_streams_sources_that_do_not_stay_on_the_device(tmp_path):
    from genview.quality import knn

    rng = np.random.default_rng(7)
    base = rng.normal(size=(50, 6)).astype(np.float32)
    np.save(tmp_path / "b.npy", base)
    mapped = np.load(tmp_path / "b.npy", mmap_mode="r")
    resident = knn.nearest(mapped, mapped, 4, exclude_self=True, query_block=9, source_block=11)
    streamed = knn.nearest(mapped, mapped, 4, exclude_self=True, query_block=9, source_block=11, resident_bytes=0)
    np.testing.assert_array_equal(resident, streamed)
    np.testing.assert_array_equal(resident, _brute_neighbours(base, base, 4, exclude_self=True))
