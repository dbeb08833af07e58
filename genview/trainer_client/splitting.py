"""Which samples each (DDP rank, DataLoader worker) reads in an epoch: exactly once, balanced.

Splitting whole shards among ranks x workers cannot balance uneven shards, and leaves slots idle
when there are fewer shards than slots. Instead, every slot computes the same epoch order of the
shards (a seeded permutation, identical on every rank), lays their samples end to end as one
sequence of N positions (counts come from the manifest), and takes a contiguous range of it:

* rank r gets ceil(N/W) positions wrapping around to the start (``even_ranks="pad"``, the
  default, like DistributedSampler's padding: at most W-1 samples are read twice per epoch), or
  floor(N/W) positions with the tail dropped (``"drop"``: at most W-1 samples left out per epoch),
  or positions [r*N//W, (r+1)*N//W) (``"none"``: every sample exactly once, but rank sizes may
  differ by one). With "pad"/"drop" all ranks have the same count, hence the same number of
  batches, which DDP needs: a rank with one batch more waits forever at its last all-reduce.
  "none" is for evaluation, or for training loops that handle uneven inputs themselves
  (``torch.distributed.algorithms.join.Join`` around a DDP loop).
* the rank's range is cut among its DataLoader workers. Each worker's share of the DataLoader's
  batches is whole batches (given ``batch_size``): every worker but the one holding the rank's tail
  yields only full batches, so the loader yields ceil(n/B) batches -- exactly ``len(loader)`` --
  and with ``drop_last`` only the rank's one partial batch is dropped. (Cutting per sample instead,
  each worker would end on its own partial batch.) The cut depends only on the range length, so
  equal-length ranks have identical per-worker counts.

A range covers whole shards in the middle and at most two partial shards at its ends; a slot
reads only the shards its range touches (a partial shard is read from its start, skipping the
samples before the range without decoding them).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

EVEN_RANKS = ("pad", "drop", "none")
#: The default: equal counts per rank, so DDP cannot hang; "none" (exactly once) is opt-in.
DEFAULT_EVEN_RANKS = "pad"


@dataclass(frozen=True)
class Segment:
    """Samples [start, stop) (positions inside one shard's tar) of one shard."""

    shard: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def epoch_shard_order(shard_counts: Sequence[tuple[int, int]], epoch: int, seed: int, shuffle: bool) -> list[tuple[int, int]]:
    """Return the (shard, count) list in this epoch's order: a permutation seeded by (seed, epoch), same on every rank."""
    order = [(int(s), int(n)) for s, n in shard_counts if int(n) > 0]
    if shuffle:
        random.Random(f"genview-shards:{int(seed)}:{int(epoch)}").shuffle(order)
    return order


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


def segments_for_range(order: Sequence[tuple[int, int]], start: int, stop: int) -> list[Segment]:
    """Map positions [start, stop) of the epoch sequence (wrapping modulo its length) to shard segments."""
    total = sum(n for _, n in order)
    if stop <= start or total == 0:
        return []
    segments: list[Segment] = []
    position = start
    while position < stop:
        wrap_base = (position // total) * total
        offset = wrap_base
        for shard, count in order:
            lo, hi = max(position, offset), min(stop, offset + count)
            if lo < hi:
                segments.append(Segment(shard, lo - offset, hi - offset))
            offset += count
        position = wrap_base + total
    return segments


def plan_partition(
    shard_counts: Sequence[tuple[int, int]],
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
) -> list[Segment]:
    """Return the shard segments one (rank, worker) slot reads in an epoch, in reading order."""
    order = epoch_shard_order(shard_counts, epoch, seed, shuffle)
    total = sum(n for _, n in order)
    r_start, r_stop = rank_range(total, rank, world_size, even_ranks)
    w_start, w_stop = worker_range(r_start, r_stop, worker, num_workers, batch_size)
    return segments_for_range(order, w_start, w_stop)


def rank_length(total: int, rank: int, world_size: int, even_ranks: str = DEFAULT_EVEN_RANKS) -> int:
    """Return how many samples a rank yields per epoch (all its workers together)."""
    start, stop = rank_range(total, rank, world_size, even_ranks)
    return stop - start
