"""Which samples each (DDP rank, DataLoader worker) reads in an epoch: exactly once, balanced, freshly mixed.

Every slot computes the same epoch order of the store's N samples -- a permutation seeded by
(seed, epoch), identical on every rank, drawn afresh each epoch -- and takes a contiguous range of
it; each sample is then read by its byte range (``byte_index``):

* rank r gets ceil(N/W) positions wrapping around to the start (``even_ranks="pad"``, the
  default, like DistributedSampler's padding: at most W-1 samples are read twice per epoch), or
  floor(N/W) positions with the tail dropped (``"drop"``: at most W-1 samples left out per epoch),
  or positions [r*N//W, (r+1)*N//W) (``"none"``: every sample exactly once, but rank sizes may
  differ by one). With "pad"/"drop" all ranks have the same count, hence the same number of
  batches, which DDP needs: a rank with one batch more waits forever at its last all-reduce.
  Since the order is a new permutation every epoch, the samples padded or dropped change every
  epoch too. "none" is for evaluation, or for training loops that handle uneven inputs
  themselves (``torch.distributed.algorithms.join.Join`` around a DDP loop).
* the rank's range is cut among its DataLoader workers. Each worker's share of the DataLoader's
  batches is whole batches (given ``batch_size``): every worker but the one holding the rank's tail
  yields only full batches, so the loader yields ceil(n/B) batches -- exactly ``len(loader)`` --
  and with ``drop_last`` only the rank's one partial batch is dropped. (Cutting per sample instead,
  each worker would end on its own partial batch.) The cut depends only on the range length, so
  equal-length ranks have identical per-worker counts.

Why a whole-store permutation and not shard order + a shuffle buffer: a sample's batch partners
then come from its own shard every epoch, so in-batch negatives repeat: on an ImageNet-shaped
simulation (8 ranks x 8 workers, buffer 256, batch 64) 5.4 % of batch pairs recurred in the next
epoch with a frozen shard order, and still 3.6 % with each shard reshuffled every epoch, against
0.005 % for a permutation (tests/datastore/test_shard_mixing.py checks the permutation's figures).
"""

from __future__ import annotations

import math

import numpy as np

EVEN_RANKS = ("pad", "drop", "none")
#: The default: equal counts per rank, so DDP cannot hang; "none" (exactly once) is opt-in.
DEFAULT_EVEN_RANKS = "pad"


def epoch_order(total: int, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
    """Return this epoch's order of the store positions 0..total-1: a permutation seeded by (seed, epoch), same on every rank."""
    if not shuffle:
        return np.arange(total, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch), 0x5348])))
    return rng.permutation(total).astype(np.int64)


def rank_range(total: int, rank: int, world_size: int, even_ranks: str = DEFAULT_EVEN_RANKS) -> tuple[int, int]:
    """Return rank's [start, stop) in the epoch sequence; with "pad", stop may pass `total` (positions wrap)."""
    if even_ranks not in EVEN_RANKS:
        raise ValueError(f"even_ranks must be one of {', '.join(EVEN_RANKS)}, got {even_ranks!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    if even_ranks == "none":
        return rank * total // world_size, (rank + 1) * total // world_size
    per_rank = math.ceil(total / world_size) if even_ranks == "pad" else total // world_size
    if total == 0:
        per_rank = 0
    return rank * per_rank, (rank + 1) * per_rank


def worker_range(start: int, stop: int, worker: int, num_workers: int, batch_size: int | None = None) -> tuple[int, int]:
    """Return worker's share [a, b) of a rank's range [start, stop); depends only on its length.

    With ``batch_size`` the shares are whole batches of the rank's sequence (the last one may be
    partial), so the workers together yield exactly ceil(length / batch_size) batches.
    """
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker {worker} is outside num_workers {num_workers}")
    length = stop - start
    if batch_size is None:
        return start + worker * length // num_workers, start + (worker + 1) * length // num_workers
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches = math.ceil(length / batch_size)
    first, last = worker * batches // num_workers, (worker + 1) * batches // num_workers
    return start + min(first * batch_size, length), start + min(last * batch_size, length)


def plan_positions(
    total: int,
    *,
    epoch: int,
    seed: int,
    shuffle: bool,
    rank: int,
    world_size: int,
    worker: int,
    num_workers: int,
    even_ranks: str = DEFAULT_EVEN_RANKS,
    batch_size: int | None = None,
) -> np.ndarray:
    """Return the store positions one (rank, worker) slot reads in an epoch, in reading order."""
    r_start, r_stop = rank_range(total, rank, world_size, even_ranks)
    w_start, w_stop = worker_range(r_start, r_stop, worker, num_workers, batch_size)
    if w_stop <= w_start or total == 0:
        return np.zeros(0, dtype=np.int64)
    return epoch_order(total, epoch, seed, shuffle)[np.arange(w_start, w_stop) % total]


def worker_lengths(rank_samples: int, num_workers: int, batch_size: int | None = None) -> list[int]:
    """Return how many samples each worker reads of a rank's `rank_samples` (the cut ``worker_range`` makes)."""
    bounds = [worker_range(0, rank_samples, w, num_workers, batch_size) for w in range(num_workers)]
    return [stop - start for start, stop in bounds]


def rank_length(total: int, rank: int, world_size: int, even_ranks: str = DEFAULT_EVEN_RANKS) -> int:
    """Return how many samples a rank yields per epoch (all its workers together)."""
    start, stop = rank_range(total, rank, world_size, even_ranks)
    return stop - start
