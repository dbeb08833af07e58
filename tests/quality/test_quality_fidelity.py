"""Quality as DA IC-GAN defined it: FID against the generator's view of the sources, NN corruption per datapoint,
Eq. 2 soft labels (computed into the store and served by the trainer client), and old stores' column names."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps
from quality_consts import GOOD, POOR
from store_doctor import rewrite_views

from genview.datastore.store import Store
from genview.quality import tables
from genview.quality.extract import Networks
from genview.quality.run import QualitySpec, measure_quality
from genview.trainer_client import GenViewDataset, SinglePolicy, ViewFilter
from genview.trainer_client.filters import eligible_views
from genview.trainer_client.store_index import StoreIndex


def _centre_crop_store(generated_store, tmp_path) -> str:
    """The generated store with every view replaced by its source's centre crop at the view's size: a generator
    that returns exactly what it was shown."""
    out = tmp_path / "store"
    shutil.copytree(generated_store, out)
    (side,) = set(Store(str(out)).manifest(columns=["width"]).column("width").drop_null().to_pylist())
    for label in (GOOD, POOR):
        rewrite_views(str(out), label, lambda src, sid, view: ImageOps.fit(src, (side, side), Image.BICUBIC), quality=100)
    return str(out)


def test_a_generator_returning_the_centre_crop_scores_fid_near_zero(generated_store, networks, tmp_path):
    url = _centre_crop_store(generated_store, tmp_path)
    sizes = {Image.open(p).size for p in (generated_store.parent / "img").rglob("*.jpg")}
    assert any(w != h for w, h in sizes)  # the sources are not square: crop and stretch differ
    # One view per source (the default, DA IC-GAN's equal counts): K identical copies would shrink the fake covariance.
    spec = QualitySpec(store=url, inception_weights="unused: networks given", k_nn=3, progress=False)
    crop = {r["label"]: r for r in measure_quality(spec, networks=networks, log=lambda _: None).classes.to_pylist()}
    whole_spec = dataclasses.replace(spec, fid_reference="whole", overwrite=True)
    whole = {r["label"]: r for r in measure_quality(whole_spec, networks=networks, log=lambda _: None).classes.to_pylist()}
    for label in (GOOD, POOR, None):
        # Only the views' JPEG rounding separates them from the reference (random Inception: scale is arbitrary).
        assert crop[label]["fid"] < 0.02 * whole[label]["fid"], label
        assert crop[label]["kid"] < 0.02 * whole[label]["kid"], label
    settings = tables.read_settings(Store(url).fs, Store(url).root)
    assert settings["fid_reference"] == "whole" and settings["networks"]["inception"]["reference"] == "whole"
    # Features of one reference never mix with the other's: a rerun without --overwrite is refused.
    from genview.datastore.store import StoreError

    with pytest.raises(StoreError, match="measured with other networks"):
        measure_quality(spec, networks=networks, log=lambda _: None)
    with pytest.raises(ValueError, match="--fid-reference"):
        measure_quality(dataclasses.replace(spec, fid_reference="crop"), networks=networks, log=lambda _: None)


def test_old_stores_column_names_still_read(measured, tmp_path):
    store_dir = tmp_path / "old"
    shutil.copytree(measured[0], store_dir)
    classes = pq.read_table(store_dir / "quality" / "classes.parquet")
    views = pq.read_table(store_dir / "quality" / "views.parquet")
    # As a store measured before the rename wrote them.
    old_classes = {"nn_corruption": "nn_corruption_sources", "view_nn_other_class": "nn_corruption"}
    pq.write_table(classes.rename_columns([old_classes.get(n, n) for n in classes.column_names]),
                   store_dir / "quality" / "classes.parquet")
    pq.write_table(views.rename_columns(["nn_corruption" if n == "view_nn_other_class" else n for n in views.column_names]),
                   store_dir / "quality" / "views.parquet")
    store = Store(str(store_dir))
    read = tables.read_classes(store.fs, store.root)
    assert read.column("nn_corruption").to_pylist() == classes.column("nn_corruption").to_pylist()
    assert read.column("view_nn_other_class").to_pylist() == classes.column("view_nn_other_class").to_pylist()
    assert tables.read_views(store.fs, store.root).column("view_nn_other_class").to_pylist() == \
        views.column("view_nn_other_class").to_pylist()
    # A rule on nn_corruption (and its old name) uses DA IC-GAN's metric, in old and new stores alike.
    rows = {r["label"]: r for r in classes.to_pylist() if r["scope"] == "class"}
    index = StoreIndex(str(store_dir))
    for label in (GOOD, POOR):
        threshold = rows[label]["nn_corruption"]
        dropped = {name for name, row in rows.items() if row["nn_corruption"] >= threshold}
        for rule in (f"nn_corruption>={threshold}", f"nn_corruption_sources>={threshold}"):
            eligible = eligible_views(index, ViewFilter(exclude=rule))
            for src in index.sources(columns=["source_id", "label"]).to_pylist():
                assert bool(eligible.views(src["source_id"])) == (src["label"] not in dropped), rule


# Solid colours: in the mean-colour space the red sources and the green sources form two tight groups,
# each mixing the classes, so every k=2 neighbourhood can be read off by hand.
COLOURS = {
    ("class_a", "0"): (250, 10, 10), ("class_a", "1"): (240, 40, 10), ("class_a", "2"): (10, 240, 20),
    ("class_b", "0"): (10, 250, 10), ("class_b", "1"): (20, 230, 40), ("class_b", "2"): (230, 20, 30),
}
# (class, file) -> (soft label [a, b], NN corruption) for k=2: red group {a0, a1, b2}, green group {a2, b0, b1}.
EXPECTED = {
    ("class_a", "0"): ([0.5, 0.5], 0.5), ("class_a", "1"): ([0.5, 0.5], 0.5), ("class_b", "2"): ([1.0, 0.0], 1.0),
    ("class_a", "2"): ([0.0, 1.0], 1.0), ("class_b", "0"): ([0.5, 0.5], 0.5), ("class_b", "1"): ([0.5, 0.5], 0.5),
}


def mean_colour(images):
    """A conditioning space whose neighbourhoods are known: each image's mean RGB."""
    return images.float().mean(dim=(2, 3))


@pytest.fixture(scope="module")
def colour_store(tmp_path_factory, tiny_weights, networks):
    from genview.cli.main import main as cli

    root = tmp_path_factory.mktemp("colours")
    for (label, name), colour in COLOURS.items():
        (root / "img" / label).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 32), colour).save(root / "img" / label / f"{name}.png")
    out = root / "store"
    assert cli(["generate", str(root / "img"), "--model", "icgan", "--weights", tiny_weights("icgan"), "--out", str(out),
                "--k", "1", "--shard-size", "3", "--device", "cpu", "--no-progress"]) == 0
    nets, identity = networks
    colour_nets = Networks(inception=nets.inception, condition_embed=mean_colour)
    identity = {**identity, "condition": {"model": "mean-colour", "sha256": "0" * 64}, "scorer": None}
    spec = QualitySpec(store=str(out), inception_weights="unused: networks given", k_nn=2, progress=False)
    measure_quality(spec, networks=(colour_nets, identity), log=lambda _: None)
    return out


def _by_file(store_dir):
    sources = Store(str(store_dir)).read_sources().to_pylist()
    return {s["source_id"]: (s["uri"].split("/")[-2], s["uri"].split("/")[-1].split(".")[0]) for s in sources}


def test_soft_labels_and_nn_corruption_match_the_hand_worked_neighbourhoods(colour_store):
    by_file = _by_file(colour_store)
    rows = pq.read_table(colour_store / "quality" / "sources.parquet").to_pylist()
    assert len(rows) == 6
    for row in rows:
        soft, corruption = EXPECTED[by_file[row["source_id"]]]
        dense = np.zeros(2)
        dense[row["soft_label_index"]] = row["soft_label_weight"]
        np.testing.assert_allclose(dense, soft, err_msg=str(by_file[row["source_id"]]))
        assert row["nn_corruption"] == pytest.approx(corruption)
    classes = {r["label"]: r for r in pq.read_table(colour_store / "quality" / "classes.parquet").to_pylist()}
    assert classes["class_a"]["nn_corruption"] == pytest.approx(2 / 3) and classes["class_b"]["nn_corruption"] == pytest.approx(2 / 3)
    assert tables.read_settings(Store(str(colour_store)).fs, str(colour_store))["num_classes"] == 2


def test_trainer_client_serves_soft_labels_for_generated_images(colour_store, generated_store):
    by_file = _by_file(colour_store)
    keep = lambda image: image.size  # noqa: E731 - the labels are under test, not the pixels
    generated = GenViewDataset(str(colour_store), SinglePolicy(p=1.0, transform=keep), labels="soft", shuffle=False)
    seen = {}
    for out in generated.iter_partition():
        assert out["view_index"] == 0
        seen[out["source_id"]] = out["soft_label"]
    assert len(seen) == 6
    for source_id, vector in seen.items():
        assert vector.dtype == np.float32 and vector.shape == (2,)
        np.testing.assert_allclose(vector, EXPECTED[by_file[source_id]][0])
    # The source image itself keeps its own one-hot label.
    real = GenViewDataset(str(colour_store), SinglePolicy(p=0.0, transform=keep), labels="soft", shuffle=False)
    for out in real.iter_partition():
        assert out["view_index"] == -1
        np.testing.assert_array_equal(out["soft_label"], np.eye(2, dtype=np.float32)[out["label_index"]])
    with pytest.raises(ValueError, match="run `genview quality"):
        GenViewDataset(str(generated_store), labels="soft")
    with pytest.raises(ValueError, match="labels must be one of"):
        GenViewDataset(str(colour_store), labels="smooth")
