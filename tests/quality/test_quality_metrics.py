"""The maths on fixed features: our FID/KID against a direct scipy/numpy computation; NN corruption; rules."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from genview.quality import knn, metrics, soft_labels
from genview.quality.rules import DA_ICGAN_RULE, excluded_labels, parse_rules


def scipy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """FID as pytorch-fid computes it: scipy's matrix square root of sigma1 @ sigma2."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def numpy_kid(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al.)."""
    d = real.shape[1]
    kxx, kyy, kxy = ((real @ real.T) / d + 1) ** 3, ((fake @ fake.T) / d + 1) ** 3, ((real @ fake.T) / d + 1) ** 3
    m, n = len(real), len(fake)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


@pytest.mark.parametrize("n,dim", [(24, 64), (120, 16)])
def test_fid_matches_scipy_in_both_regimes(n, dim):
    rng = np.random.default_rng(n)
    real = rng.normal(size=(n, dim))
    fake = rng.normal(0.4, 1.3, size=(n + 7, dim))
    expected = scipy_fid(real, fake)
    assert metrics.fid_torchmetrics(real, fake) == pytest.approx(expected, rel=1e-6)
    assert metrics.fid_low_rank(real, fake) == pytest.approx(expected, rel=1e-6)
    assert metrics.frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)
    # Same distribution, more samples: small; shifted distribution: large.
    assert metrics.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)


def test_fid_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        metrics.frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))


def test_kid_matches_direct_unbiased_mmd():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(30, 8)), rng.normal(0.5, 1.0, size=(30, 8))
    mean, std = metrics.kernel_inception_distance(real, fake)
    assert mean == pytest.approx(numpy_kid(real, fake), rel=1e-6)
    assert std == 0.0  # one subset of everything: nothing to vary
    # Subsets smaller than the sets: seeded, so the same call gives the same figure.
    big = rng.normal(size=(50, 8))
    assert metrics.kernel_inception_distance(big, fake, subsets=5) == metrics.kernel_inception_distance(big, fake, subsets=5)


def test_nn_corruption_counts_other_class_neighbours_of_each_datapoint():
    # DA IC-GAN §4.1: the share of each datapoint's neighbourhood (itself left out, as ic_gan does) from another class.
    sources = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.8, 0.2]], dtype=np.float32)
    labels = np.array(["a", "a", "b", "b", "b"], dtype=object)  # the last "b" sits among the a's
    neighbours = knn.nearest(sources, sources, k=2, exclude_self=True)
    assert [set(row) for row in neighbours.tolist()] == [{1, 4}, {0, 4}, {3, 4}, {2, 4}, {1, 0}]
    np.testing.assert_allclose(soft_labels.nn_corruption(neighbours, labels), [0.5, 0.5, 0.0, 0.0, 1.0])


@pytest.mark.parametrize("exclude_self", [False, True])
def test_blocked_knn_equals_brute_force_across_block_edges(exclude_self):
    rng = np.random.default_rng(5)
    base = rng.normal(size=(53, 6)).astype(np.float32)
    queries = base if exclude_self else rng.normal(size=(37, 6)).astype(np.float32)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    sims = unit(queries) @ unit(base).T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    got = knn.nearest(queries, base, 7, exclude_self=exclude_self, query_block=8, source_block=5)
    np.testing.assert_array_equal(got, expected)
    assert knn.nearest(queries, base, 7, exclude_self=exclude_self).tolist() == got.tolist()
    with pytest.raises(ValueError, match="at least one other source"):
        knn.nearest(base[:1], base[:1], 3, exclude_self=True)


def test_soft_labels_are_eq2_over_the_neighbourhood():
    # y_soft_i = 1/k sum_{j in A_i} y_j: neighbours with labels (0, 0, 2) -> 2/3 on class 0, 1/3 on class 2.
    neighbours = np.array([[1, 2, 3], [0, 2, 3]])
    label_index = np.array([0, 0, 0, 2])
    indices, weights = soft_labels.soft_labels(neighbours, label_index)
    assert [i.tolist() for i in indices] == [[0, 2], [0, 2]]
    np.testing.assert_allclose(weights[0], [2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(soft_labels.dense(indices[0], weights[0], 4), [2 / 3, 0, 1 / 3, 0], rtol=1e-6)
    # An unlabelled neighbour keeps its 1/k share out of every class.
    idx, w = soft_labels.soft_labels(np.array([[1, 2]]), np.array([0, -1, 1]))
    assert idx[0].tolist() == [1] and w[0].tolist() == [0.5]


def test_cosine_and_diversity():
    a = np.array([[1, 0], [0, 2]], dtype=np.float32)
    np.testing.assert_allclose(metrics.row_cosine(a, np.array([[2, 0], [1, 0]])), [1.0, 0.0], atol=1e-6)
    assert metrics.mean_pairwise_distance(np.array([[1, 0], [0, 1], [1, 0]])) == pytest.approx((1 + 0 + 1) / 3)
    assert np.isnan(metrics.mean_pairwise_distance(np.array([[1.0, 0.0]])))


def test_rules_parse_and_select_classes():
    rows = [{"label": "x", "fid": 151.0, "nn_corruption": 0.1}, {"label": "y", "fid": 149.9, "nn_corruption": 0.8},
            {"label": "z", "fid": None, "nn_corruption": None}]
    assert DA_ICGAN_RULE == "fid>=150"
    assert excluded_labels(rows, parse_rules("da-icgan")) == {"x"}
    assert excluded_labels(rows, parse_rules("fid>=150, nn_corruption > 0.5")) == {"x", "y"}
    assert excluded_labels(rows, parse_rules("fid<100")) == set()  # a class without a value is never matched
    for bad, message in [("fid=>150", "not METRIC OP NUMBER"), ("accuracy<3", "unknown metric"), ("fid>=abc", "not METRIC")]:
        with pytest.raises(ValueError, match=message):
            parse_rules(bad)
