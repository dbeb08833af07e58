"""E-LDM end to end: train -> generate -> interpolate, and interpolated stores' contents."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from PIL import Image

from genview.cli.main import main
from genview.datastore.store import Store
from genview.datastore.verify import verify_store
from genview.pipeline import GenerateSpec, generate
from genview.pipeline.decode import decode_image


def _members(tar_path):
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_train_generate_interpolate_loop(tmp_path, image_folder, capsys):
    init = tmp_path / "init"
    run = tmp_path / "run"
    assert main(["models", "init", "eldm", "--preset", "tiny", "--out", str(init)]) == 0
    assert main(["train", "eldm", str(image_folder), "--init", str(init), "--out", str(run), "--steps", "30",
                 "--batch-size", "8", "--warmup-steps", "5", "--checkpoint-every", "15", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "steps 0 -> 30" in out
    # Rerunning the finished command resumes at its last checkpoint and has nothing left to do.
    assert main(["train", "eldm", str(image_folder), "--init", str(init), "--out", str(run), "--steps", "30",
                 "--batch-size", "8", "--warmup-steps", "5", "--checkpoint-every", "15", "--no-progress"]) == 0
    assert "nothing to train" in capsys.readouterr().out

    store = tmp_path / "store"
    assert main(["generate", str(image_folder), "--model", "eldm", "--weights", str(run), "--k", "2", "--out", str(store),
                 "--interpolate", "--alphas", "0.25,0.75", "--pair-across", "label", "--param", "steps=3",
                 "--shard-size", "6", "--no-progress"]) == 0
    report = verify_store(str(store), decode=True)
    assert report.ok and report.views == 24, str(report)
    rows = Store(str(store)).manifest().to_pylist()
    label_of = {r["source_id"]: r["label"] for r in rows}
    uri_of = {r["source_id"]: r["source_uri"] for r in rows}
    assert [r["alpha"] for r in rows[:2]] == [0.25, 0.75]
    for r in rows:
        assert r["secondary_id"] != r["source_id"]
        assert label_of[r["secondary_id"]] != r["label"]  # --pair-across label
    members = _members(store / "shards" / "000000.tar")
    key = min(name.split(".", 1)[0] for name in members)
    meta = json.loads(members[f"{key}.json"])
    assert meta["alphas"] == [0.25, 0.75] and meta["interpolation"] == "slerp"
    # The secondary is stored as the generator saw it (decoded RGB, re-encoded as the store's src format).
    seen = decode_image(open(uri_of[meta["secondary_id"]], "rb").read(), min_side=256)
    assert Image.open(io.BytesIO(members[f"{key}.sec.jpg"])).size == seen.size


def test_alpha_zero_gives_exactly_the_plain_views(tmp_path, image_folder, tiny_weights):
    common = dict(source=str(image_folder), model="eldm", weights=tiny_weights("eldm"), k=2, shard_size=12, params={"steps": 2})
    generate(GenerateSpec(out=str(tmp_path / "plain"), **common), progress=False)
    generate(GenerateSpec(out=str(tmp_path / "interp"), interpolate=True, alphas=[0.0], **common), progress=False)
    plain, interp = _members(tmp_path / "plain/shards/000000.tar"), _members(tmp_path / "interp/shards/000000.tar")
    views = [name for name in plain if ".v" in name]
    assert views and all(plain[name] == interp[name] for name in views)
    assert any(".sec." in name for name in interp) and not any(".sec." in name for name in plain)


def test_interpolation_options_need_interpolate(image_folder):
    with pytest.raises(ValueError, match="only apply with interpolate"):
        GenerateSpec(source=str(image_folder), out="x", model="eldm", alphas=[0.5])
    with pytest.raises(ValueError, match=r"alphas must lie in \[0, 1\]"):
        GenerateSpec(source=str(image_folder), out="x", model="eldm", interpolate=True, alphas=[1.5])


def test_pair_across_a_missing_column_is_a_clear_error(tmp_path, image_folder, tiny_weights):
    spec = GenerateSpec(source=str(image_folder), out=str(tmp_path / "s"), model="eldm", weights=tiny_weights("eldm"),
                        k=1, interpolate=True, pair_across="slide")
    with pytest.raises(ValueError, match="slide"):
        generate(spec, progress=False)
