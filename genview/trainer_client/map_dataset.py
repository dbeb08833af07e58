"""GenViewMapDataset: random access by index over a store, for code that needs __getitem__ + DistributedSampler."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from genview.trainer_client.byte_index import SampleReader, load_or_build
from genview.trainer_client.filters import EligibleViews, ViewFilter, eligible_views
from genview.trainer_client.policies import PairPolicy, ViewContext
from genview.trainer_client.runtime import SharedEpoch
from genview.trainer_client.samples import RawSample
from genview.trainer_client.sampler import ViewRequest
from genview.trainer_client.store_index import StoreIndex


class GenViewMapDataset(Dataset):
    """A map-style dataset over a store: index i is the i-th sample in (shard, tar) order.

    The index holds one (shard, byte offset, byte length) per sample, built by reading tar member
    headers (no image bytes) and optionally cached as parquet at ``index_cache``; ``__getitem__``
    is one range read. Accepts an int or a ``ViewRequest`` (from ``FixedCountBatchSampler``),
    whose ``generated`` flag overrides the policy's p draw. Use ``set_epoch`` each epoch so the
    generated view drawn for each source changes (the same (seed, epoch) gives the same views).
    Damaged data always raises here (a map-style dataset cannot skip an index). A store with fewer
    done shards than planned is refused unless ``allow_partial=True``.
    """

    def __init__(
        self,
        store: str | StoreIndex,
        policy: Callable[[RawSample, ViewContext], Any] | None = None,
        *,
        seed: int = 0,
        view_filter: ViewFilter | None = None,
        index_cache: str | os.PathLike | None = None,
        epoch: int = 0,
        storage_options: dict[str, Any] | None = None,
        allow_partial: bool = False,
    ):
        self.index = store if isinstance(store, StoreIndex) else StoreIndex(store, storage_options)
        self.index.require_complete(allow_partial)  # a half-copied store would silently miss whole shards
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.policy = policy if policy is not None else PairPolicy()
        self.seed = int(seed)
        self.view_filter = view_filter
        self.eligible: EligibleViews | None = (
            eligible_views(self.index, view_filter) if view_filter is not None and view_filter.active else None
        )
        self.reader = SampleReader(self.index, load_or_build(self.index, index_cache))
        self.shard_of, self.offsets = self.reader.shard_of, self.reader.offsets
        self.lengths, self.source_ids = self.reader.lengths, self.reader.source_ids
        self._epoch = SharedEpoch(epoch)

    # -- epoch, filters ----------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; DataLoader workers, persistent or not, pick it up."""
        self._epoch.set(epoch)

    def eligible_mask(self) -> np.ndarray:
        """Return, per index, whether the source has an eligible generated view (for FixedCountBatchSampler)."""
        if self.eligible is None:
            return np.ones(len(self), dtype=bool)
        return self.eligible.any_eligible(self.source_ids)

    # -- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.source_ids)

    def raw(self, index: int) -> RawSample:
        """Return sample `index` with its members still encoded."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return self.reader.raw(int(index) % len(self))

    def __getitem__(self, request: int | ViewRequest) -> Any:
        """Return policy(sample) for an int index or a ViewRequest (index, generated)."""
        if isinstance(request, ViewRequest):
            index, generated = request.index, bool(request.generated)
        else:
            index, generated = int(request), None
        sample = self.raw(index)
        eligible = None if self.eligible is None else self.eligible.views(sample.source_id)
        ctx = ViewContext(epoch=self.epoch, seed=self.seed, k=self.index.k, eligible=eligible, generated=generated)
        return self.policy(sample, ctx)
