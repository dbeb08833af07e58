"""The maths of view quality on precomputed features: FID, KID, cosine, diversity (neighbourhoods: knn.py).

FID and KID are torchmetrics' own (``FrechetInceptionDistance`` / ``KernelInceptionDistance`` fed
precomputed features through a pass-through extractor), so the figures are the field's. One
exactness-preserving shortcut: when a class has fewer samples than feature dimensions (every class
of ImageNet: ~1,300 images vs 2,048 dims), tr sqrt(S1 S2) is computed from the n1 x n2 product of
the centred features instead of the eigenvalues of a 2048 x 2048 matrix (seconds per class on a
CPU); the two agree to float64 rounding, which tests check against torchmetrics and scipy.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn


class _Precomputed(nn.Module):
    """A torchmetrics 'feature extractor' that passes already-computed features through."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = int(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def fid_torchmetrics(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """Return torchmetrics' FrechetInceptionDistance between two feature sets [N, D]."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _as_tensor(real), _as_tensor(fake)
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def fid_low_rank(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """Return FID computed exactly through the n1 x n2 cross product of centred features (fast when n < D)."""
    real, fake = _as_tensor(real), _as_tensor(fake)
    n1, n2 = real.shape[0], fake.shape[0]
    a1, a2 = real - real.mean(0), fake - fake.mean(0)
    mean_term = (real.mean(0) - fake.mean(0)).square().sum()
    # tr S = ||A||_F^2 / (n - 1); eigenvalues of S1 S2 are the squared singular values of A1 A2^T / sqrt(c).
    traces = a1.square().sum() / (n1 - 1) + a2.square().sum() / (n2 - 1)
    cross = torch.linalg.svdvals(a1 @ a2.T).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    return float(mean_term + traces - 2 * cross)


def frechet_distance(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """Return the FID between two feature sets (needs >= 2 of each), the fast exact form when samples < dims."""
    n1, n2, dim = len(real), len(fake), np.shape(real)[1]
    if min(n1, n2) < 2:
        raise ValueError(f"FID needs at least 2 samples on each side, got {n1} and {n2}")
    if max(n1, n2) < dim:
        return fid_low_rank(real, fake)
    return fid_torchmetrics(real, fake)


def kernel_inception_distance(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Return torchmetrics' KID (mean, std over subsets); subsets shrink to the smaller side, seeded."""
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _as_tensor(real), _as_tensor(fake)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {len(real)} and {len(fake)}")
    # One subset of everything is the whole set again (MMD ignores order): no point repeating it.
    subsets = subsets if size < max(len(real), len(fake)) else 1
    with warnings.catch_warnings():  # "will save all extracted features": they are already in memory here
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # torchmetrics draws the subsets with the global generator
    try:
        mean, std = metric.compute()
    finally:
        torch.random.set_rng_state(state)
    return float(mean), float(std)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the cosine between matching rows of a and b."""
    return np.sum(_unit(a) * _unit(b), axis=1).astype(np.float32)


def mean_pairwise_distance(feats: np.ndarray) -> float:
    """Return the mean cosine distance (1 - cos) over all pairs of rows; NaN for fewer than 2 rows."""
    n = len(feats)
    if n < 2:
        return float("nan")
    u = _unit(feats)
    sims = u @ u.T
    return float((n * n - sims.sum()) / (n * (n - 1)))
