"""DA IC-GAN's per-source neighbourhood figures: NN corruption and soft labels (seed 004, §4.1 and Eq. 2).

For source i with neighbourhood A_i (its k nearest other sources in the conditioning space, the
neighbourhood IC-GAN was trained on) and one-hot labels y_j:

    NN corruption_i = |{j in A_i : y_j != y_i}| / k
    y_soft_i        = (1 / k) * sum_{j in A_i} y_j            (Eq. 2)

A generated image conditioned on source i follows the class distribution of A_i, so DA IC-GAN
trains on it with y_soft_i instead of y_i. Soft labels are stored sparse: the label indices present
in A_i and their shares (at most k of them, summing to 1).
"""

from __future__ import annotations

import numpy as np


def nn_corruption(neighbours: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return, per row i of [N, k] neighbour indices, the share of neighbours whose label differs from labels[i]."""
    labels = np.asarray(labels)
    return (labels[neighbours] != labels[:, None]).mean(axis=1).astype(np.float32)


def soft_labels(neighbours: np.ndarray, label_index: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return (indices, weights) per row: Eq. 2's y_soft over the row's neighbours, as sorted label indices and shares.

    A neighbour without a label (label_index < 0) counts in the 1/k but adds to no class, so such a
    row's weights sum to less than 1: it says how much of the neighbourhood is known.
    """
    label_index = np.asarray(label_index, dtype=np.int64)
    k = neighbours.shape[1]
    indices, weights = [], []
    for row in label_index[neighbours]:
        present, counts = np.unique(row[row >= 0], return_counts=True)
        indices.append(present.astype(np.int32))
        weights.append((counts / k).astype(np.float32))
    return indices, weights


def dense(indices: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    """Return one soft label as a dense float32 vector of `num_classes` (what a soft-target loss takes)."""
    out = np.zeros(num_classes, dtype=np.float32)
    out[np.asarray(indices, dtype=np.int64)] = np.asarray(weights, dtype=np.float32)
    return out
