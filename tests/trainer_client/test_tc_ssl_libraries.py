"""lightly and solo-learn: their multi-view transforms as they are, their batch layouts, and both examples running."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision import transforms as T

from genview.trainer_client import GenViewDataset, MultiViewPolicy, PairPolicy, lightly_policy, sololearn_policy
from tc_store_factory import build_store, identify

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TENSOR = T.PILToTensor()


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lightly_simclr_transform_is_accepted_as_it_is(store):
    from lightly.transforms import SimCLRTransform

    transform = SimCLRTransform(input_size=24, gaussian_blur=0.0)
    # The failure: "object of type 'SimCLRTransform' has no len()".
    pair = GenViewDataset(store.url, PairPolicy(p=1.0, transforms=transform)).loader(4)
    batch = next(iter(pair))
    assert batch["view1"].shape == batch["view2"].shape == (4, 3, 24, 24)
    # lightly's layout: x0, x1 = batch[0] (it was KeyError: 0 with dict batches).
    loader = GenViewDataset(store.url, lightly_policy(transform)).loader(4)
    views, targets, names = next(iter(loader))
    x0, x1 = views
    assert x0.shape == x1.shape == (4, 3, 24, 24) and targets.dtype == torch.int64
    assert len(names) == 4 and all(name.startswith("fake/") for name in names)


def test_a_two_view_transform_given_per_view_is_an_error_not_a_list(store):
    from lightly.transforms import SimCLRTransform

    two_views = SimCLRTransform(input_size=24)
    ds = GenViewDataset(store.url, PairPolicy(p=1.0, transforms=(two_views, two_views)))
    with pytest.raises(TypeError, match="returned 2 views for one image"):
        next(iter(ds))


def test_first_crop_from_the_source_the_others_from_a_generated_view(store):
    from lightly.transforms.multi_view_transform import MultiViewTransform

    policy = MultiViewPolicy(MultiViewTransform([TENSOR] * 4), p=1.0)
    for views, _, _ in GenViewDataset(store.url, policy, shuffle=False):
        who = [identify(v, store.ok_ids, store.k) for v in views]
        assert who[0][1] == -1 and len({w[0] for w in who}) == 1  # crop 0: the source; all: one source id
        assert all(view == who[1][1] >= 0 for _, view in who[1:])  # the others: the same generated view


def test_sololearn_crop_pipeline_and_layout(store):
    shapes = load_example("sololearn_byol")  # solo-learn's NCropAugmentation / FullTransformPipeline (or its copy)
    pipeline = shapes.FullTransformPipeline([shapes.NCropAugmentation(TENSOR, 2), shapes.NCropAugmentation(TENSOR, 3)])
    ds = GenViewDataset(store.url, sololearn_policy(pipeline, p=1.0), shuffle=False)
    index, views, target = next(iter(ds))
    assert index == store.ok_ids[0] and len(views) == 5 and target == index % 3
    assert identify(views[0], store.ok_ids, store.k)[1] == -1 and identify(views[4], store.ok_ids, store.k)[1] >= 0
    indexes, (x1, x2), targets = next(iter(GenViewDataset(
        store.url, sololearn_policy(shapes.NCropAugmentation(T.Compose([T.Resize(8), T.ToTensor()]), 2))).loader(4)))
    assert indexes.shape == targets.shape == (4,) and x1.shape == x2.shape == (4, 3, 8, 8)


def test_transforms_that_are_not_multi_view_are_refused():
    with pytest.raises(TypeError, match="Compose is not a multi-view transform"):
        lightly_policy(T.Compose([TENSOR]))
    with pytest.raises(ValueError, match="got 3 views"):
        PairPolicy(transforms=[TENSOR] * 3)


@pytest.mark.parametrize("example", ["lightly_simclr", "sololearn_byol"])
def test_example_trains_a_few_steps(tmp_path, example):
    store = build_store(tmp_path / "store", shard_sizes=(16, 16), failed_in=(), marker=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(EXAMPLES.parent), os.environ.get("PYTHONPATH", "")]))}
    result = subprocess.run([sys.executable, str(EXAMPLES / f"{example}.py"), str(store.root), "--max-steps", "3",
                             "--batch-size", "8"], capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [float(x) for x in re.findall(r"step \d+: loss (-?[0-9.]+)", result.stdout)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
