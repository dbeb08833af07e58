"""GenViewMapDataset (random access + DistributedSampler) and the fixed-count batch sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler
from torchvision import transforms as T

from genview.trainer_client import (
    CorruptShardError,
    FixedCountBatchSampler,
    GenViewMapDataset,
    PairPolicy,
    PartialStoreError,
    PartialStoreWarning,
    SinglePolicy,
    ViewFilter,
    ViewRequest,
)
from genview.trainer_client.sampler import generated_count
from tc_store_factory import identify

TENSOR = T.PILToTensor()


def test_map_dataset_random_access_returns_the_right_images(store):
    ds = GenViewMapDataset(store.url, PairPolicy(p=1.0, transforms=(TENSOR, TENSOR)))
    assert len(ds) == len(store.ok_ids)
    assert ds.source_ids.tolist() == store.ok_ids
    for i in [0, 7, 28, 13, -1]:
        s = ds[i]
        assert s["source_id"] == store.ok_ids[i]
        assert identify(s["view1"], store.ok_ids, 3) == (s["source_id"], -1)
        assert identify(s["view2"], store.ok_ids, 3) == (s["source_id"], s["view2_index"])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_map_dataset_with_distributed_sampler_covers_everything(store):
    ds = GenViewMapDataset(store.url, SinglePolicy(p=0.0, transform=TENSOR))
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(1)
        loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=1)
        seen += [int(i) for batch in loader for i in batch["source_id"]]
    assert set(seen) == set(store.ok_ids) and len(seen) == 30  # 29 padded to 2 x 15


def test_map_index_cache_is_reused_and_invalidated(store_copy, tmp_path):
    cache = tmp_path / "index.parquet"
    first = GenViewMapDataset(store_copy.url, SinglePolicy(p=0.0, transform=TENSOR), index_cache=cache)
    assert cache.exists()
    mtime = cache.stat().st_mtime_ns
    again = GenViewMapDataset(store_copy.url, SinglePolicy(p=0.0, transform=TENSOR), index_cache=cache)
    assert cache.stat().st_mtime_ns == mtime and again.offsets.tolist() == first.offsets.tolist()
    (store_copy.root / "stats" / "000006.json").unlink()  # the store changed: rebuild
    with pytest.raises(PartialStoreError, match="6 of its 7 planned shards"):
        GenViewMapDataset(store_copy.url, SinglePolicy(p=0.0, transform=TENSOR), index_cache=cache)
    with pytest.warns(PartialStoreWarning):
        smaller = GenViewMapDataset(store_copy.url, SinglePolicy(p=0.0, transform=TENSOR), index_cache=cache,
                                    allow_partial=True)
    assert len(smaller) == len(first) - len(store_copy.shard_ids[6])


def test_map_index_detects_count_mismatch(store_copy):
    store_copy.tar(1).write_bytes(store_copy.tar(0).read_bytes())
    with pytest.raises(CorruptShardError, match="holds 5 samples but its manifest lists 1"):
        GenViewMapDataset(store_copy.url, SinglePolicy(p=0.0, transform=TENSOR))


def test_view_request_overrides_p(store):
    ds = GenViewMapDataset(store.url, SinglePolicy(p=0.0, transform=TENSOR))
    assert ds[ViewRequest(3, True)]["view_index"] >= 0
    assert ds[ViewRequest(3, False)]["view_index"] == -1
    assert ds[3]["view_index"] == -1


@pytest.mark.parametrize("batch,p", [(64, 0.5), (8, 0.3), (100, 0.07), (5, 1.0), (5, 0.0), (7, 0.01)])
def test_generated_count_is_ceil(batch, p):
    assert generated_count(batch, p) == math.ceil(round(batch * p, 9))
    assert generated_count(100, 0.07) == 7


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_fixed_count_per_batch(p):
    sampler = FixedCountBatchSampler(RandomSampler(range(29)), batch_size=8, p_generated=p, seed=1)
    batches = list(sampler)
    assert [len(b) for b in batches] == [8, 8, 8, 5] and len(sampler) == 4
    for b in batches:
        assert sum(r.generated for r in b) == math.ceil(round(len(b) * p, 9))
    assert sorted(r.index for b in batches for r in b) == list(range(29))


def test_fixed_count_positions_change_with_epoch_and_repeat_with_seed():
    def marks(epoch, seed):
        s = FixedCountBatchSampler(SequentialSampler(range(32)), 8, 0.5, seed=seed)
        s.set_epoch(epoch)
        return [[r.generated for r in b] for b in s]

    assert marks(0, 0) == marks(0, 0)
    assert marks(0, 0) != marks(1, 0)
    assert marks(0, 0) != marks(0, 3)


def test_fixed_count_drop_last_and_distributed_epoch():
    inner = DistributedSampler(list(range(30)), num_replicas=2, rank=0, shuffle=True)
    s = FixedCountBatchSampler(inner, batch_size=4, p_generated=0.25, drop_last=True)
    s.set_epoch(2)
    assert inner.epoch == 2
    assert len(list(s)) == len(s) == 3


def test_fixed_count_respects_eligibility():
    eligible = np.zeros(16, dtype=bool)
    eligible[:3] = True
    s = FixedCountBatchSampler(SequentialSampler(range(16)), 8, 0.5, eligible=eligible)
    first, second = list(s)
    assert sum(r.generated for r in first) == 3 and all(r.index < 3 for r in first if r.generated)
    assert not any(r.generated for r in second)


def test_fixed_count_end_to_end_with_filter(store):
    ds = GenViewMapDataset(store.url, SinglePolicy(p=0.0, transform=TENSOR), view_filter=ViewFilter(min_similarity=0.7))
    mask = ds.eligible_mask()
    assert mask.tolist() == [sid % 7 != 3 for sid in store.ok_ids]
    sampler = FixedCountBatchSampler(SequentialSampler(ds), batch_size=6, p_generated=0.5, eligible=mask)
    loader = DataLoader(ds, batch_sampler=sampler)
    for batch in loader:
        views = batch["view_index"].tolist()
        assert sum(v >= 0 for v in views) == math.ceil(len(views) * 0.5)
        assert all(v in (-1, 2) for v in views)  # only view 2 passes min_similarity 0.7


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="p_generated"):
        FixedCountBatchSampler(range(4), 2, 1.5)
    with pytest.raises(ValueError, match="batch_size"):
        FixedCountBatchSampler(range(4), 0, 0.5)
