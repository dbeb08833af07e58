"""Shards are random samples of the dataset, so training batches mix classes like a random permutation.

Replays the trainer client's own partition (plan_partition) and shuffle buffer over an
ImageNet-shaped listing (1000 classes x 1281, path-sorted as a folder lists it) with the README
defaults (8 ranks x 8 workers, buffer 256, batch 64), on rank 0's eight workers.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import webdataset as wds

from genview.datastore.sources import assign_shards
from genview.trainer_client.splitting import plan_partition

CLASSES, PER_CLASS, SHARD, RANKS, WORKERS, BUFFER, BATCH = 1000, 1281, 1000, 8, 8, 256, 64


def distinct_classes_per_batch(planned: pa.Table) -> float:
    """Mean distinct labels per batch of 64 over rank 0's workers, as the client would read them."""
    labels = planned.column("label_index").to_numpy()
    shards = planned.column("shard").to_numpy()
    starts = np.searchsorted(shards, np.arange(shards.max() + 2))
    counts = [(s, int(starts[s + 1] - starts[s])) for s in range(shards.max() + 1)]
    distinct = []
    for worker in range(WORKERS):
        segments = plan_partition(counts, epoch=0, seed=0, shuffle=True, rank=0, world_size=RANKS,
                                  worker=worker, num_workers=WORKERS)
        stream = (int(labels[starts[seg.shard] + i]) for seg in segments for i in range(seg.start, seg.stop))
        rng = random.Random(f"genview-buffer:0:0:0:{worker}")
        shuffled = list(wds.filters.shuffle(bufsize=BUFFER, initial=BUFFER, rng=rng)(stream))
        distinct += [len(set(shuffled[i:i + BATCH])) for i in range(0, len(shuffled) - BATCH + 1, BATCH)]
    return float(np.mean(distinct))


def test_random_shard_assignment_mixes_classes_like_a_permutation():
    n = CLASSES * PER_CLASS
    listing = pa.table({
        "source_id": pa.array(np.arange(n), pa.int64()),
        "label_index": pa.array(np.repeat(np.arange(CLASSES), PER_CLASS), pa.int32()),  # path order = class order
    })
    planned = assign_shards(listing, SHARD, seed=0)
    mixed = distinct_classes_per_batch(planned)

    # The reference: batches of a uniformly random permutation of the whole dataset.
    perm = np.random.default_rng(1).permutation(listing.column("label_index").to_numpy())
    reference = float(np.mean([len(set(perm[i:i + BATCH])) for i in range(0, 200_000, BATCH)]))
    # What path-order runs (format v1's plan) gave: shards of one or two classes.
    runs = listing.append_column("shard", pa.array(np.arange(n) // SHARD, pa.int32()))
    sorted_runs = distinct_classes_per_batch(runs)

    assert reference > 60
    assert mixed >= 0.9 * reference, (mixed, reference)
    assert sorted_runs < 0.2 * reference  # the failure this guards against is real in the simulation
