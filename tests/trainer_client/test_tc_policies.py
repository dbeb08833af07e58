"""View policies: p=0 / p=1, both views, per-epoch choice, strategies, filters, interpolation triplets."""

from __future__ import annotations

import pytest
import torch
from torchvision import transforms as T

from genview.trainer_client import (
    GenViewDataset,
    GenViewMapDataset,
    PairPolicy,
    SinglePolicy,
    SoloLearnOutput,
    StoreFormatError,
    TripletPolicy,
    ViewFilter,
    classes_above_fid,
)
from genview.trainer_client.policies import ViewContext
from tc_store_factory import ALPHAS, identify

TENSOR = T.PILToTensor()


def pairs(store, p, both=False, epoch=0, seed=0, view_filter=None):
    ds = GenViewDataset(store.url, PairPolicy(p=p, both=both, transforms=(TENSOR, TENSOR)), seed=seed,
                        epoch=epoch, view_filter=view_filter)
    return list(ds)


def test_p0_yields_only_sources(store):
    for s in pairs(store, p=0.0):
        assert s["view1_index"] == s["view2_index"] == -1
        assert identify(s["view1"], store.ok_ids, store.k) == (s["source_id"], -1)
        assert identify(s["view2"], store.ok_ids, store.k) == (s["source_id"], -1)


def test_p1_yields_only_generated_second_views(store):
    for s in pairs(store, p=1.0):
        assert s["view1_index"] == -1 and 0 <= s["view2_index"] < store.k
        assert identify(s["view1"], store.ok_ids, store.k) == (s["source_id"], -1)
        assert identify(s["view2"], store.ok_ids, store.k) == (s["source_id"], s["view2_index"])


def test_both_views_generated_are_distinct(store):
    for s in pairs(store, p=1.0, both=True):
        assert s["view1_index"] >= 0 and s["view2_index"] >= 0 and s["view1_index"] != s["view2_index"]
        assert identify(s["view1"], store.ok_ids, store.k) == (s["source_id"], s["view1_index"])


def test_intermediate_p_mixes_sources_and_views(store):
    chosen = [s["view2_index"] for epoch in range(6) for s in pairs(store, p=0.5, epoch=epoch)]
    generated = sum(v >= 0 for v in chosen) / len(chosen)
    assert 0.35 < generated < 0.65


def test_view_choice_changes_with_epoch_and_repeats_with_seed(store):
    def choice(epoch, seed):
        return {s["source_id"]: s["view2_index"] for s in pairs(store, p=1.0, epoch=epoch, seed=seed)}

    assert choice(0, 0) == choice(0, 0)
    assert choice(0, 0) != choice(1, 0)
    assert choice(0, 0) != choice(0, 7)
    # Over epochs every view of a source gets used.
    per_source = {}
    for epoch in range(12):
        for sid, view in choice(epoch, 0).items():
            per_source.setdefault(sid, set()).add(view)
    assert all(views == {0, 1, 2} for views in per_source.values())


def test_view_choice_does_not_depend_on_rank_worker_or_map_access(store):
    policy = PairPolicy(p=1.0, transforms=(TENSOR, TENSOR))
    streamed = {}
    for rank in range(2):
        ds = GenViewDataset(store.url, policy, rank=rank, world_size=2, even_ranks="pad", epoch=3)
        for worker in range(3):
            streamed.update({s["source_id"]: s["view2_index"] for s in ds.iter_partition(worker, 3)})
    mapped = GenViewMapDataset(store.url, policy, epoch=3)
    assert streamed == {mapped[i]["source_id"]: mapped[i]["view2_index"] for i in range(len(mapped))}


@pytest.mark.parametrize("strategy", ["generative_standard", "generative_crop", "generative_only"])
def test_strategies_set_the_standard_augmentation(store, strategy):
    policy = PairPolicy(p=1.0, strategy=strategy, preset="simclr", crop_size=16)
    names = [type(t).__name__ for t in policy.transforms[0].transforms]
    if strategy == "generative_standard":
        assert "ColorJitter" in str(policy.transforms[0]) and "RandomGrayscale" in names
    elif strategy == "generative_crop":
        assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    else:
        assert names == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    sample = next(iter(GenViewDataset(store.url, policy)))
    assert sample["view1"].shape == sample["view2"].shape == (3, 16, 16)


def test_policy_argument_errors():
    with pytest.raises(ValueError, match="p must be in"):
        PairPolicy(p=1.5)
    with pytest.raises(ValueError, match="unknown strategy"):
        PairPolicy(strategy="generative_and_jitter")
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        PairPolicy(preset="swav2")


def test_min_similarity_restricts_views_and_falls_back_to_source(store):
    # similarities are 0.4 / 0.6 / 0.8, except sources with id % 7 == 3 (0.1 / 0.2 / 0.3).
    for epoch in range(3):
        for s in pairs(store, p=1.0, epoch=epoch, view_filter=ViewFilter(min_similarity=0.7)):
            expected = -1 if s["source_id"] % 7 == 3 else 2
            assert s["view2_index"] == expected


def test_excluded_classes_by_name_and_index_get_sources_only(store):
    by_name = pairs(store, p=1.0, view_filter=ViewFilter(exclude_labels={"class1"}))
    by_index = pairs(store, p=1.0, view_filter=ViewFilter(exclude_labels={1}))
    for samples in (by_name, by_index):
        for s in samples:
            assert (s["view2_index"] == -1) == (store.labels[s["source_id"]] == "class1")


def test_classes_above_fid_uses_da_icgan_threshold():
    assert classes_above_fid({"a": 149.9, "b": 150.0, "c": 310.0}) == {"b", "c"}
    assert classes_above_fid({"a": 80.0}, threshold=50) == {"a"}


def test_single_policy_forced_by_context(store):
    ds = GenViewDataset(store.url, SinglePolicy(p=0.0, transform=TENSOR))
    sample = next(ds.raw_samples())
    policy = SinglePolicy(p=0.0, transform=TENSOR)
    assert policy(sample, ViewContext(epoch=0, seed=0, k=3))["view_index"] == -1
    assert policy(sample, ViewContext(epoch=0, seed=0, k=3, generated=True))["view_index"] >= 0
    assert policy(sample, ViewContext(epoch=0, seed=0, k=3, eligible=(), generated=True))["view_index"] == -1


@pytest.mark.parametrize("fixture", ["interp_store", "interp_store_primary_weights"])
def test_triplets_from_an_interpolation_store(fixture, request):
    """v1 stores kept the secondary's weight as "alphas"; current ones "primary_weights": both read the same."""
    interp_store = request.getfixturevalue(fixture)
    ds = GenViewDataset(interp_store.url, TripletPolicy(transform=TENSOR), shuffle=False)
    samples = list(ds)
    assert len(samples) == len(interp_store.ok_ids)
    for s in samples:
        sid = s["source_id"]
        assert s["secondary_id"] == interp_store.secondary[sid]
        # The factory's view j is (1 - ALPHAS[j]) * primary + ALPHAS[j] * secondary in pixels.
        assert s["primary_weight"] == pytest.approx(1 - ALPHAS[s["view_index"]])
        assert s["alpha"] == s["primary_weight"]  # Gen-SIS's alpha is the primary's weight
        ids = interp_store.ok_ids
        assert identify(s["primary"], ids, 3) == (sid, -1)
        assert identify(s["secondary"], ids, 3) == (interp_store.secondary[sid], -1)
        assert identify(s["interpolated"], ids, 3) == (sid, s["view_index"])


def test_triplets_restricted_to_alphas(interp_store):
    ds = GenViewDataset(interp_store.url, TripletPolicy(alphas=[0.5], transform=TENSOR))
    assert {round(s["alpha"], 3) for s in ds} == {0.5}


def test_triplets_on_a_plain_store_say_what_is_missing(store):
    ds = GenViewDataset(store.url, TripletPolicy(transform=TENSOR))
    with pytest.raises(StoreFormatError, match="--interpolate"):
        next(iter(ds))


def test_triplet_batches_collate(interp_store):
    from torch.utils.data import DataLoader

    batch = next(iter(DataLoader(GenViewDataset(interp_store.url, TripletPolicy(crop_size=16)), batch_size=4)))
    assert batch["interpolated"].shape == (4, 3, 16, 16)
    assert batch["primary_weight"].dtype == torch.float64


def test_solo_learn_output_unpacks_like_solo_learn(store):
    from torch.utils.data import DataLoader

    ds = GenViewDataset(store.url, SoloLearnOutput(PairPolicy(p=1.0, crop_size=16)))
    indexes, views, targets = next(iter(DataLoader(ds, batch_size=4)))
    assert indexes.shape == targets.shape == (4,)
    assert len(views) == 2 and views[0].shape == views[1].shape == (4, 3, 16, 16)
