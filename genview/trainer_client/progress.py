"""How far a rank got through an epoch, and where each DataLoader worker resumes.

A DataLoader over an IterableDataset asks its workers for batches in turn (worker 0, 1, 2, ...,
0, ...), passes over a worker once it has run out, and yields the batches in that order (its
default ``in_order=True``). The batches a rank's loader has yielded therefore fix how many each
worker has handed out -- the same on every rank, since equal rank lengths give equal worker cuts
(``splitting.worker_range``). A resumed loader starts again at worker 0 over what each worker has
left, so the count after a resume continues from the per-worker counts it resumed at.
"""

from __future__ import annotations

import math
from typing import Sequence


def worker_batches(lengths: Sequence[int], batch_size: int, drop_last: bool = False) -> list[int]:
    """Return the batches each worker yields for its sample count (its final partial batch gone with drop_last)."""
    return [n // batch_size if drop_last else math.ceil(n / batch_size) for n in lengths]


def consumed_per_worker(batches: Sequence[int], already: Sequence[int], yielded: int) -> list[int]:
    """Return each worker's batches handed out after the loader yielded `yielded` more, from `already`.

    ``batches``: each worker's batches in the epoch; ``already``: what each had handed out when this
    loader started (zeros for a fresh epoch). Raises ValueError when `yielded` exceeds what is left.
    """
    done = list(already)
    left = [b - a for b, a in zip(batches, done)]
    if yielded > sum(left):
        raise ValueError(f"{yielded} batches yielded but only {sum(left)} were left in the epoch")
    rounds = 0
    while yielded:
        active = [w for w, n in enumerate(left) if n > rounds]
        take = active[:yielded]
        for w in take:
            done[w] += 1
        yielded -= len(take)
        rounds += 1
    return done
