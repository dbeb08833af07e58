"""FixedCountBatchSampler: exactly ceil(batch * p_G) generated images per batch (seed 004, App. A.2)."""

from __future__ import annotations

import math
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from torch.utils.data import Sampler


class ViewRequest(NamedTuple):
    """A map-style index plus whether this sample must use a generated view (True) or its source (False)."""

    index: int
    generated: bool


def generated_count(batch_size: int, p_generated: float) -> int:
    """Return ceil(batch_size * p_G), immune to float noise (100 * 0.07 is 7, not 8)."""
    return math.ceil(round(batch_size * p_generated, 9))


class FixedCountBatchSampler(Sampler[list[ViewRequest]]):
    """Batch sampler that marks exactly ceil(len(batch) * p_G) samples of each batch as generated.

    DA IC-GAN fixes the number of IC-GAN-augmented images per batch to ceil(batch_size * p_G)
    instead of drawing a coin per image, so the generated part of the batch has a fixed size
    (seed 004, App. A.2). Wraps any index sampler (RandomSampler, DistributedSampler, ...) like
    torch's BatchSampler and yields lists of ``ViewRequest`` that ``GenViewMapDataset`` accepts.
    Which positions are generated is drawn from (seed, epoch, batch number). With ``eligible``
    (``GenViewMapDataset.eligible_mask()``), only samples that have an eligible view are marked,
    so filtered classes keep their real images; a batch with too few eligible samples gets fewer.
    """

    def __init__(
        self,
        sampler: Sampler[int] | Iterable[int],
        batch_size: int,
        p_generated: float,
        *,
        drop_last: bool = False,
        seed: int = 0,
        eligible: Sequence[bool] | np.ndarray | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= float(p_generated) <= 1.0:
            raise ValueError(f"p_generated must be in [0, 1], got {p_generated}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.p_generated = float(p_generated)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.eligible = None if eligible is None else np.asarray(eligible, dtype=bool)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (also on the wrapped sampler, e.g. a DistributedSampler)."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _mark(self, batch: list[int], number: int) -> list[ViewRequest]:
        count = generated_count(len(batch), self.p_generated)
        positions = np.arange(len(batch))
        if self.eligible is not None:
            positions = positions[self.eligible[np.asarray(batch, dtype=np.int64)]]
        rng = np.random.default_rng([self.seed, self.epoch, number, 0x7047])
        chosen = set(rng.choice(positions, size=min(count, len(positions)), replace=False).tolist()) if count else set()
        return [ViewRequest(int(index), i in chosen) for i, index in enumerate(batch)]

    def __iter__(self) -> Iterator[list[ViewRequest]]:
        batch: list[int] = []
        number = 0
        for index in self.sampler:
            batch.append(int(index))
            if len(batch) == self.batch_size:
                yield self._mark(batch, number)
                batch, number = [], number + 1
        if batch and not self.drop_last:
            yield self._mark(batch, number)

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
