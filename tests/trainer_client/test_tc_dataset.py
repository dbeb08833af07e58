"""GenViewDataset: exact-once coverage over ranks x workers, epochs, shuffling, corrupt shards."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import transforms as T

from genview.trainer_client import (
    CorruptShardError,
    CorruptShardWarning,
    GenViewDataset,
    PairPolicy,
    PartialStoreError,
    PartialStoreWarning,
    SinglePolicy,
    StoreFormatError,
)
from tc_store_factory import build_store, identify

TENSOR = T.PILToTensor()
# 3 workers on a 2-core machine is deliberate here (2 ranks x 3 workers).
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create")


def pair_policy(p=1.0, both=False):
    return PairPolicy(p=p, both=both, transforms=(TENSOR, TENSOR))


def ids_from_loader(dataset, num_workers, batch_size=4):
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    return [int(i) for batch in loader for i in batch["source_id"]]


def test_exactly_once_over_2_ranks_x_3_workers_with_uneven_shards(store):
    seen = []
    for rank in range(2):
        ds = GenViewDataset(store.url, pair_policy(), rank=rank, world_size=2, seed=3, even_ranks="none")
        ds.set_epoch(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # 29 samples over 2 ranks: uneven, by design here
            got = ids_from_loader(ds, num_workers=3)
        assert len(got) == len(ds)
        seen += got
    assert Counter(seen) == Counter(store.ok_ids)


@pytest.mark.filterwarnings("ignore:29 samples over 2 ranks")
def test_simulated_workers_match_the_partition_for_every_slot(store):
    for epoch in range(2):
        seen = []
        for rank in range(2):
            ds = GenViewDataset(store.url, pair_policy(), rank=rank, world_size=2, even_ranks="none")
            for worker in range(3):
                seen += [s["source_id"] for s in ds.iter_partition(worker, 3, epoch=epoch)]
        assert sorted(seen) == sorted(store.ok_ids)


def test_fewer_shards_than_ranks_times_workers_does_not_hang(tmp_path):
    small = build_store(tmp_path / "one", shard_sizes=(7,), failed_in=())
    seen = []
    for rank in range(2):
        ds = GenViewDataset(small.url, pair_policy(), rank=rank, world_size=2, even_ranks="pad")
        seen += ids_from_loader(ds, num_workers=3, batch_size=2)
    assert set(seen) == set(small.ok_ids) and len(seen) == 8  # 7 + 1 padded to 4 per rank


def test_even_ranks_drop_gives_equal_lengths(store):
    lengths = [len(GenViewDataset(store.url, pair_policy(), rank=r, world_size=3, even_ranks="drop")) for r in range(3)]
    assert lengths == [9, 9, 9]


def test_uneven_ranks_warn_once_with_exactly_once(store):
    ds = GenViewDataset(store.url, pair_policy(), rank=0, world_size=2, even_ranks="none")
    with pytest.warns(UserWarning, match="Join"):
        list(ds.iter_partition())


def test_default_gives_every_rank_the_same_count(store):
    # 29 samples over 2 ranks: "pad" (the default) gives 15 and 15, one sample read twice.
    lengths = [len(GenViewDataset(store.url, pair_policy(), rank=r, world_size=2)) for r in range(2)]
    assert lengths == [15, 15]
    seen = []
    for rank in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # no unevenness warning on the default
            seen += [s["source_id"] for s in GenViewDataset(store.url, pair_policy(), rank=rank, world_size=2)]
    assert set(seen) == set(store.ok_ids) and len(seen) == 30


@pytest.mark.parametrize("num_workers", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_len_of_loader_is_the_batches_it_yields(store, num_workers, drop_last):
    # Rank 0 of 2 reads 15 samples; batch 3. Split per sample, 2 workers would read 7 + 8 and
    # yield 3 + 3 = 6 batches (len says 5), or with drop_last 2 + 2 = 4 (12 samples, 3 dropped).
    ds = GenViewDataset(store.url, pair_policy(), rank=0, world_size=2, seed=1)
    loader = ds.loader(3, num_workers=num_workers, drop_last=drop_last)
    sizes = [len(batch["source_id"]) for batch in loader]
    assert len(sizes) == len(loader) == 5
    assert sum(sizes) == 15  # 15 = 5 x 3: nothing to drop
    ds4 = GenViewDataset(store.url, pair_policy(), rank=0, world_size=2, seed=1)
    loader4 = ds4.loader(4, num_workers=num_workers, drop_last=drop_last)
    sizes = [len(batch["source_id"]) for batch in loader4]
    assert len(sizes) == len(loader4) == (3 if drop_last else 4)
    assert sum(sizes) == (12 if drop_last else 15)  # at most one partial batch per rank dropped


def test_workers_without_batch_size_warn(store, monkeypatch):
    # Warnings raised in worker processes never reach the test: play worker 0 of 2 in-process.
    from torch.utils.data._utils import worker

    ds = GenViewDataset(store.url, pair_policy())
    monkeypatch.setattr(worker, "_worker_info", worker.WorkerInfo(id=0, num_workers=2, seed=0, dataset=ds))
    with pytest.warns(UserWarning, match="without batch_size"):
        iter(ds)
    ds.loader(4)  # records the batch size: no warning any more
    ds.set_epoch(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iter(ds)


def test_shuffle_changes_with_epoch_and_repeats_with_seed(store):
    def order(epoch, seed):
        ds = GenViewDataset(store.url, SinglePolicy(p=0.0, transform=TENSOR), seed=seed)
        ds.set_epoch(epoch)
        return [s["source_id"] for s in ds]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(1, 0)
    assert order(0, 0) != order(0, 1)
    assert sorted(order(2, 5)) == sorted(store.ok_ids)


def test_no_shuffle_reads_store_order(store):
    ds = GenViewDataset(store.url, SinglePolicy(p=0.0, transform=TENSOR), shuffle=False)
    got = [s["source_id"] for s in ds]
    assert got == store.ok_ids
    first = next(ds.iter_partition())
    assert identify(first["image"], store.ok_ids, store.k) == (store.ok_ids[0], -1)


def test_set_epoch_reaches_persistent_workers(store):
    ds = GenViewDataset(store.url, pair_policy(p=1.0), seed=0, shuffle=False)
    loader = DataLoader(ds, batch_size=64, num_workers=1, persistent_workers=True)
    views = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        batch = next(iter(loader))
        views.append(batch["view2_index"].tolist())
    assert views[0] != views[1]
    reference = GenViewDataset(store.url, pair_policy(p=1.0), seed=0, shuffle=False, epoch=1)
    assert views[1] == [s["view2_index"] for s in reference]


def test_corrupt_shard_fails_loudly_by_default(store_copy):
    tar = store_copy.tar(2)
    tar.write_bytes(tar.read_bytes()[: 3000])  # truncated mid-member
    ds = GenViewDataset(store_copy.url, pair_policy(), shuffle=False)
    with pytest.raises(CorruptShardError, match=r"shard 000002.*on_corrupt='warn'"):
        list(ds)


def test_corrupt_shard_skip_and_warn(store_copy):
    tar = store_copy.tar(2)
    tar.write_bytes(tar.read_bytes()[: 3000])
    ds = GenViewDataset(store_copy.url, pair_policy(), shuffle=False, on_corrupt="warn")
    with pytest.warns(CorruptShardWarning, match="000002"):
        got = [s["source_id"] for s in ds]
    others = [sid for shard, ids in store_copy.shard_ids.items() if shard != 2 for sid in ids]
    assert set(others) <= set(got) < set(store_copy.ok_ids)


def test_sample_count_mismatch_is_corruption(store_copy, tmp_path):
    # Shard 1 (1 sample) replaced by shard 0's tar (5 samples): the manifest count no longer holds.
    store_copy.tar(1).write_bytes(store_copy.tar(0).read_bytes())
    ds = GenViewDataset(store_copy.url, pair_policy(), shuffle=False)
    with pytest.raises(CorruptShardError, match="holds 5 samples but its manifest lists 1"):
        list(ds)


def test_undecodable_view_is_a_corrupt_sample(store_copy):
    import io
    import tarfile

    tar_path = store_copy.tar(1)
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:
        for info, data in members:
            if ".v" in info.name and info.name.endswith(".jpg"):  # every generated view of the sample
                data = b"not a jpeg"
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    policy = PairPolicy(p=1.0, transforms=(TENSOR, TENSOR))
    loud = GenViewDataset(store_copy.url, policy, shuffle=False)
    with pytest.raises(CorruptShardError, match=r"v\d\.jpg.*cannot be decoded"):
        list(loud)
    quiet = GenViewDataset(store_copy.url, SinglePolicy(p=1.0, transform=TENSOR), shuffle=False, on_corrupt="warn")
    with pytest.warns(CorruptShardWarning):
        got = [s["source_id"] for s in quiet]
    assert sorted(got) == sorted(set(store_copy.ok_ids) - set(store_copy.shard_ids[1]))


def test_store_without_header_is_rejected(tmp_path):
    with pytest.raises(StoreFormatError, match="genview.json does not exist"):
        GenViewDataset(str(tmp_path), pair_policy())


def test_unfinished_shard_is_invisible(store_copy):
    (store_copy.root / "stats" / "000006.json").unlink()  # no done marker: shard 6 is "not there"
    with pytest.warns(PartialStoreWarning, match="6 of its 7 planned shards"):
        ds = GenViewDataset(store_copy.url, pair_policy(), shuffle=False, allow_partial=True)
    assert len(ds) == len(store_copy.ok_ids) - len(store_copy.shard_ids[6])


def test_a_partial_store_is_refused_unless_allowed(tmp_path):
    # The case: a pull that failed on one of 4 shards left 3 done (9 of 14 samples).
    store = build_store(tmp_path / "store", shard_sizes=(3, 3, 5, 3), failed_in=())
    (store.root / "stats" / "000002.json").unlink()
    with pytest.raises(PartialStoreError, match=r"3 of its 4 planned shards done \(9 samples readable\).*allow_partial=True"):
        GenViewDataset(store.url, pair_policy())
    with pytest.warns(PartialStoreWarning, match="3 of its 4 planned shards"):
        ds = GenViewDataset(store.url, SinglePolicy(p=0.0, transform=TENSOR), allow_partial=True)
    assert len([s for s in ds]) == 9


def test_batches_collate_to_tensors(store):
    policy = PairPolicy(p=1.0, preset="simclr", crop_size=24)
    loader = DataLoader(GenViewDataset(store.url, policy), batch_size=8)
    batch = next(iter(loader))
    assert batch["view1"].shape == (8, 3, 24, 24) and batch["view1"].dtype == torch.float32
    assert batch["label_index"].dtype == torch.int64 and len(batch["key"]) == 8


def test_iterating_the_same_epoch_twice_warns_once(store):
    ds = GenViewDataset(store.url, pair_policy())
    list(ds)
    with pytest.warns(UserWarning, match="call set_epoch"):
        list(ds)
    ds.set_epoch(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(ds)
