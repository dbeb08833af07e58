"""The maths of view quality on precomputed features: FID, KID, cosine, diversity (neighbourhoods: knn.py).

FID and KID are torchmetrics' own (``FrechetInceptionDistance`` / ``KernelInceptionDistance`` fed
precomputed features through a pass-through extractor), so the figures are the field's. One
exactness-preserving shortcut: when a class has fewer samples than feature dimensions (every class
of ImageNet: ~1,300 images vs 2,048 dims), tr sqrt(S1 S2) is computed from the n1 x n2 product of
the centred features instead of the eigenvalues of a 2048 x 2048 matrix (seconds per class on a
CPU); the two agree to float64 rounding, which tests check against torchmetrics and scipy.
"""

from __future__ import annotations

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
    return torch.from_numpy(np.array(x, dtype=np.float64))  # a copy: memory-mapped rows are read-only


#: Rows per update when features are fed to torchmetrics from a memory map (8,192 x 2,048 float64: 128 MiB).
FEATURE_BATCH = 8192


def fid_torchmetrics(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, batch: int = FEATURE_BATCH) -> float:
    """Return torchmetrics' FrechetInceptionDistance between two feature sets [N, D].

    The metric keeps running sums (mean and covariance), so the rows are fed in batches: `real` and
    `fake` may be memory-mapped arrays far larger than memory.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Precomputed(np.shape(real)[1]))
    for rows, is_real in ((real, True), (fake, False)):
        for start in range(0, len(rows), batch):
            metric.update(_as_tensor(rows[start : start + batch]), real=is_real)
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
        return fid_low_rank(np.asarray(real[:]), np.asarray(fake[:]))
    return fid_torchmetrics(real, fake)


def kernel_inception_distance(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, subsets: int = 100, subset_size: int = 1000,
    seed: int = 0, device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """Return KID (mean, std over subsets) as torchmetrics' ``KernelInceptionDistance`` computes it.

    The same subsets (``randperm`` per subset and side, from a generator seeded with `seed`) and
    torchmetrics' own ``poly_mmd`` on each, but only the drawn rows are read: `real` and `fake` may
    be memory-mapped arrays of millions of rows (torchmetrics' metric keeps every feature in memory
    and concatenates them). Subsets shrink to the smaller side; ``device`` runs the kernels there.
    """
    from torchmetrics.image.kid import poly_mmd

    n_real, n_fake = len(real), len(fake)
    size = min(subset_size, n_real, n_fake)
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {n_real} and {n_fake}")
    # One subset of everything is the whole set again (MMD ignores order): no point repeating it.
    subsets = subsets if size < max(n_real, n_fake) else 1
    generator = torch.Generator().manual_seed(seed)

    def draw(rows: np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
        # Sorted picks read a memory map in file order; MMD does not depend on the order within a subset.
        pick = np.sort(torch.randperm(n, generator=generator)[:size].numpy())
        return torch.as_tensor(np.asarray(rows[pick]), dtype=torch.float64, device=device)

    scores = []
    for _ in range(subsets):
        f_real = draw(real, n_real)
        f_fake = draw(fake, n_fake)
        scores.append(poly_mmd(f_real, f_fake, degree=3, gamma=None, coef=1.0))
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))


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
