"""`genview quality` on a two-class store whose class_01 views are noise: that class measures worse and is excluded."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from quality_consts import GOOD, K, K_NN, POOR

from genview.cli.main import main as cli
from genview.datastore.store import Store, StoreError
from genview.quality import tables
from genview.quality.run import QualitySpec, measure_quality, quality_done_shards
from genview.trainer_client.filters import ViewFilter, eligible_views
from genview.trainer_client.store_index import StoreIndex


def test_poor_class_has_higher_fid_kid_corruption_and_lower_independent_score(measured):
    _, rows = measured
    good, poor, overall = rows[GOOD], rows[POOR], rows[None]
    assert (good["sources"], good["views"], overall["views"]) == (4, 4 * K, 8 * K)
    assert poor["fid"] > 10 * good["fid"]
    assert poor["kid"] > good["kid"]
    assert poor["view_nn_other_class"] > good["view_nn_other_class"]
    # DA IC-GAN's NN corruption describes the sources' neighbourhoods, whatever the views are.
    assert 0.0 <= good["nn_corruption"] <= 1.0 and 0.0 <= poor["nn_corruption"] <= 1.0
    assert poor["independent"] < good["independent"]
    # DA IC-GAN's rule (FID >= 150) drops the noise class only, on these (random-weight) figures.
    assert poor["fid"] >= 150 > good["fid"]
    assert overall["scope"] == "all" and good["fid"] < overall["fid"] < poor["fid"]


def test_store_records_networks_digests_and_random_flags(measured, quality_weights):
    store, _ = measured
    settings = json.loads((store / "quality" / "quality.json").read_text())
    nets = settings["networks"]
    assert set(nets) == {"inception", "condition", "scorer"}
    assert all(nets[name]["random_init"] is True for name in nets)
    assert len(nets["inception"]["sha256"]) == 64 and nets["inception"]["id"].endswith("pt_inception-2015-12-05-6726825d.pth")
    assert nets["condition"]["sha256"] == json.loads((store / "genview.json").read_text())["spec"]["weights"]["sha256"]
    assert nets["scorer"]["spec"] == "openclip:tiny"
    assert settings["complete"] is True and settings["k_nn"] == K_NN and settings["fid_views"] == "all"
    views = pq.read_table(store / "quality" / "views.parquet")
    assert views.num_rows == 8 * K
    by_label = {}
    for row in views.to_pylist():
        by_label.setdefault(row["label"], []).append(row)
    # Faithful views score ~1 under the independent encoder; noise views do not.
    assert min(r["independent"] for r in by_label[GOOD]) > max(r["independent"] for r in by_label[POOR])
    assert all(0.0 <= r["view_nn_other_class"] <= 1.0 for r in views.to_pylist())


def test_trainer_client_excludes_by_the_stores_own_tables(measured):
    store, rows = measured
    index = StoreIndex(str(store))
    eligible = eligible_views(index, ViewFilter(exclude=True))  # True = DA IC-GAN's rule
    sources = index.sources(columns=["source_id", "label"]).to_pylist()
    for src in sources:
        assert eligible.views(src["source_id"]) == (() if src["label"] == POOR else tuple(range(K)))
    # Any stored metric and threshold
    by_corruption = eligible_views(index, ViewFilter(exclude=f"view_nn_other_class>={rows[POOR]['view_nn_other_class']}"))
    assert not any(by_corruption.views(s["source_id"]) for s in sources if s["label"] == POOR)
    # min_similarity on the independent score: the noise views fall below the faithful ones' floor.
    floor = min(r["independent"] for r in pq.read_table(store / "quality" / "views.parquet").to_pylist() if r["label"] == GOOD)
    indep = eligible_views(index, ViewFilter(min_similarity=floor, similarity_from="independent"))
    assert [bool(indep.views(s["source_id"])) for s in sources] == [s["label"] == GOOD for s in sources]
    with pytest.raises(ValueError, match="unknown metric"):
        ViewFilter(exclude="accuracy<5")


def test_filters_need_quality_tables(generated_store):
    index = StoreIndex(str(generated_store))
    with pytest.raises(ValueError, match="run `genview quality"):
        eligible_views(index, ViewFilter(exclude="fid>=150"))


def test_inspect_and_preview_order_by_quality(measured, capsys, tmp_path):
    store, _ = measured
    assert cli(["inspect", str(store), "--order", "fid"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("quality    per class"):]
    assert table.index(POOR) < table.index(GOOD)  # worst FID first
    assert "RANDOM weights in the quality networks" in table
    assert cli(["inspect", str(store), "--order", "independent"]) == 0
    table = capsys.readouterr().out.split("quality    per class")[1]
    assert table.index(POOR) < table.index(GOOD)  # lowest independent score first
    assert cli(["inspect", str(store), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in summary["quality"]["classes"]] == [POOR, GOOD]
    from genview.datastore.preview import quality_badness

    bad = quality_badness(Store(str(store)), "view_nn_other_class")
    labels = {s["source_id"]: s["label"] for s in StoreIndex(str(store)).sources(columns=["source_id", "label"]).to_pylist()}
    worst_first = sorted(bad, key=bad.get, reverse=True)
    assert labels[worst_first[0]] == POOR
    capsys.readouterr()
    assert cli(["preview", str(store), "--out", str(tmp_path / "p.png"), "--order", "fid", "--rows", "2"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and printed.index(POOR) < printed.index(GOOD) and "(all)" in printed


def test_resume_measures_only_unfinished_shards_and_refuses_other_networks(measured, networks, tmp_path):
    import shutil

    store_dir = tmp_path / "store"
    shutil.copytree(measured[0], store_dir)
    store = Store(str(store_dir))
    assert quality_done_shards(store) == {0, 1}
    # A run killed after shard 0: the marker is the last thing a shard writes, so shard 1 is simply redone.
    store.fs.rm(tables.done_path(store.root, 1))
    spec = QualitySpec(store=str(store_dir), inception_weights="unused: networks given", k_nn=K_NN, fid_views="all")
    again = measure_quality(spec, networks=networks, log=lambda _: None)
    assert again.shards_run == 1 and again.shards_total == 2
    for before, after in zip(sorted(measured[1].values(), key=lambda r: str(r["label"])),
                             sorted(again.classes.to_pylist(), key=lambda r: str(r["label"]))):
        assert before.keys() == after.keys()
        for name, value in before.items():
            assert after[name] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), name
    # Features of other networks never mix with these.
    settings_path = store_dir / "quality" / "quality.json"
    settings = json.loads(settings_path.read_text())
    settings["networks"]["inception"]["sha256"] = "0" * 64
    settings_path.write_text(json.dumps(settings))
    with pytest.raises(StoreError, match="measured with other networks"):
        measure_quality(spec, networks=networks, log=lambda _: None)


def test_sources_read_from_their_uris_without_a_source_copy(measured, networks, tmp_path):
    import shutil

    from store_doctor import strip_sources

    store_dir = tmp_path / "store"
    shutil.copytree(measured[0], store_dir)
    store = Store(str(store_dir))
    assert strip_sources(str(store_dir), 1) == 4
    store.fs.rm(tables.done_path(store.root, 1))
    spec = QualitySpec(store=str(store_dir), inception_weights="unused: networks given", k_nn=K_NN, fid_views="all")
    report = measure_quality(spec, networks=networks, log=lambda _: None)
    assert report.shards_run == 1
    rows = {r["label"]: r for r in report.classes.to_pylist()}
    assert rows[POOR]["fid"] >= 150 > rows[GOOD]["fid"] and rows[None]["sources"] == 8
    # generate --overwrite starts the store over: its quality results go with the views they describe.
    store.clear()
    assert not (store_dir / "quality").exists()


def test_inception_loading_is_strict(tmp_path):
    from genview.quality.inception import INCEPTION_FILE, InceptionFeatures

    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / INCEPTION_FILE)
    with pytest.raises(ValueError, match="not an FID Inception-v3 state dict"):
        InceptionFeatures(tmp_path)
    with pytest.raises(FileNotFoundError, match="models init inception"):
        InceptionFeatures(tmp_path / "missing")


def test_random_inception_preset_is_the_standard_format(quality_weights):
    from genview.quality.inception import INCEPTION_FILE, InceptionFeatures

    folder = quality_weights("inception")
    state = torch.load(f"{folder}/{INCEPTION_FILE}", weights_only=True)
    assert "Mixed_7c.branch_pool.conv.weight" in state and state["fc.weight"].shape == (1008, 2048)
    net = InceptionFeatures(folder)
    assert net.weights.random_init and net.weights.preset == "tiny"
    feats = net.embed([torch.full((3, 40, 40), 128, dtype=torch.uint8), torch.zeros(3, 20, 30, dtype=torch.uint8)])
    assert feats.shape == (2, 2048) and bool(torch.isfinite(feats).all())


def test_scorer_errors_name_the_flag(quality_weights, tmp_path):
    from genview.quality.scorer import IndependentScorer

    with pytest.raises(FileNotFoundError, match="--scorer-weights"):
        IndependentScorer("openclip:ViT-B-32", None)
    with pytest.raises(ValueError, match="unknown kind"):
        IndependentScorer("clipper:x", quality_weights("openclip"))
    with pytest.raises(FileNotFoundError, match="open_clip_config.json"):
        IndependentScorer("openclip:tiny", tmp_path)
    scorer = IndependentScorer("openclip:tiny", quality_weights("openclip"))
    emb = scorer.embed([torch.zeros(3, 50, 40, dtype=torch.uint8)] * 3)
    assert emb.shape == (3, 32) and np.allclose(emb.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_dino_scorer_reads_an_official_checkpoint_or_a_saved_encoder(tmp_path):
    from genview.generator.base import write_random_marker
    from genview.generator.encoders import ConditionEncoder
    from genview.quality.scorer import IndependentScorer

    encoder = ConditionEncoder.dino("tiny")
    encoder.save(tmp_path / "saved")
    write_random_marker(tmp_path / "saved", "dino", "tiny", 0)
    torch.save(encoder.network.state_dict(), tmp_path / "dino_vit.pth")  # the official checkpoint's key layout
    images = [torch.zeros(3, 40, 50, dtype=torch.uint8), torch.full((3, 32, 32), 200, dtype=torch.uint8)]
    from_folder = IndependentScorer("dino", tmp_path / "saved")
    from_file = IndependentScorer("dino", tmp_path / "dino_vit.pth")
    assert from_folder.weights.random_init and not from_file.weights.random_init
    from PIL import Image

    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    expected = torch.nn.functional.normalize(encoder.embed(pil), dim=1)
    assert torch.allclose(from_folder.embed(images), expected, atol=1e-5)
    # A bare checkpoint file gets DINO's own 224 px recipe (the folder recorded the tiny 32 px one).
    assert from_file.embed(images).shape == (2, 32)



def test_a_shard_is_embedded_in_chunks_that_move_the_progress(measured, networks, tmp_path, monkeypatch):
    import shutil

    from genview.quality import extract

    store_dir = tmp_path / "store"
    shutil.copytree(measured[0], store_dir)
    store = Store(str(store_dir))
    nets = networks[0]
    whole = extract.extract_shard(store, 0, nets)
    expected = extract.load_features(store, 0)
    monkeypatch.setattr(extract, "CHUNK_SOURCES", 1)
    chunks: list[tuple[int, int]] = []
    marker = extract.extract_shard(store, 0, nets, on_progress=lambda s, v: chunks.append((s, v)))
    assert chunks == [(1, K)] * 4  # one call per source and its K views, before the shard commits
    assert (marker["sources"], marker["views"]) == (whole["sources"], whole["views"]) == (4, 4 * K)
    got = extract.load_features(store, 0)
    assert sorted(got) == sorted(expected)
    for name in expected:
        if expected[name].dtype.kind == "f":
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(got[name], expected[name])
