"""Fixtures for quality tests: random FID-Inception / open_clip presets and a two-class store with one poor class.

The store is generated normally with the tiny random IC-GAN, then its views are rewritten through the
shard writer API (store_doctor.py) at the two ends of view quality, because views of random weights
are neither good nor bad on purpose: class_00's views are what a faithful generator would give (the
source itself, mirrored for odd views), class_01's are uniform noise (a generator that ignores its
condition).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageOps

sys.path.insert(0, str(Path(__file__).parent))

from quality_consts import GOOD, K, K_NN, POOR  # noqa: E402
from store_doctor import noise_view, rewrite_views  # noqa: E402


@pytest.fixture(scope="session")
def quality_weights(tiny_weights):
    """Return a function name -> folder of a random preset (inception, openclip, icgan)."""
    return tiny_weights


@pytest.fixture(scope="session")
def generated_store(tmp_path_factory, tiny_weights):
    """A tiny IC-GAN store of 2 classes x 4 sources, K=2, 2 shards (as generated, views untouched)."""
    from genview.cli.main import main as cli
    from genview.synthetic_data import make_image_folder

    root = tmp_path_factory.mktemp("quality-store")
    make_image_folder(root / "img", classes=2, per_class=4, size=64, seed=1)
    out = root / "store"
    code = cli(["generate", str(root / "img"), "--model", "icgan", "--weights", tiny_weights("icgan"), "--out", str(out),
                "--k", str(K), "--shard-size", "4", "--batch-size", "8", "--device", "cpu", "--no-progress"])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def doctored_store(tmp_path_factory, generated_store):
    """The generated store with class_00's views faithful and class_01's views noise."""
    out = tmp_path_factory.mktemp("doctored") / "store"
    shutil.copytree(generated_store, out)
    rng = np.random.default_rng(0)
    assert rewrite_views(str(out), POOR, lambda src, sid, view: noise_view(rng, 64)) == 4 * K
    assert rewrite_views(str(out), GOOD, lambda src, sid, view: ImageOps.mirror(src) if view % 2 else src) == 4 * K
    return out


@pytest.fixture(scope="session")
def networks(tiny_weights, generated_store):
    """The quality networks, loaded once: (Networks, identity)."""
    from genview.datastore.store import Store
    from genview.quality.run import QualitySpec, load_networks

    spec = QualitySpec(store=str(generated_store), inception_weights=tiny_weights("inception"), scorer="openclip:tiny",
                       scorer_weights=tiny_weights("openclip"))
    return load_networks(spec, Store(str(generated_store)).spec)


@pytest.fixture(scope="session")
def measured(doctored_store, quality_weights):
    """Run the CLI verb once on the doctored store; return (store path, classes.parquet rows by label)."""
    import pyarrow.parquet as pq

    from genview.cli.main import main as cli

    code = cli(["quality", str(doctored_store), "--inception-weights", quality_weights("inception"),
                "--scorer", "openclip:tiny", "--scorer-weights", quality_weights("openclip"),
                "--k-nn", str(K_NN), "--fid-views", "all"])
    assert code == 0
    classes = pq.read_table(doctored_store / "quality" / "classes.parquet").to_pylist()
    return doctored_store, {row["label"]: row for row in classes}
