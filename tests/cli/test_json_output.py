"""--json on generate, verify, pull and preview: stdout is one JSON document; the preview marks random weights;
a recipe run that resumes a plain store records the recipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from genview.cli.main import main
from genview.datastore.preview import RANDOM_BAND_COLOR, RANDOM_BAND_HEIGHT
from genview.datastore.store import Store


def genview_json(*argv: str) -> dict:
    """Run `genview ARGV` in a subprocess and parse its whole stdout as JSON."""
    result = subprocess.run([sys.executable, "-m", "genview.cli.main", *argv], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout) | {"_stderr": result.stderr}


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_weights):
    from genview.synthetic_data import make_image_folder

    base = tmp_path_factory.mktemp("json-store")
    make_image_folder(base / "src", classes=2, per_class=2, size=48, seed=4)
    summary = genview_json("generate", str(base / "src"), "--model", "icgan", "--weights", tiny_weights(), "--k", "2",
                           "--shard-size", "2", "--out", str(base / "st"), "--no-progress", "--json")
    return base / "st", summary


def test_generate_json_summary(store):
    out, summary = store
    assert summary["out"] == str(out) and summary["ok"] == 4 and summary["views"] == 8 and summary["shards"] == 2
    assert summary["random_weights"] is True and "RANDOMLY INITIALISED" in summary["_stderr"]


def test_verify_json(store):
    report = genview_json("verify", str(store[0]), "--json")
    assert report["ok"] is True and report["problems"] == [] and report["views"] == 8 and report["repair"] is None


def test_pull_json(store, tmp_path):
    report = genview_json("pull", str(store[0]), "--to", str(tmp_path / "copy"), "--json")
    assert sorted(report["shards_copied"]) == [0, 1] and report["verified"] is True and report["bytes_copied"] > 0


def test_preview_json_and_its_random_weights_band(store, tmp_path):
    report = genview_json("preview", str(store[0]), "--out", str(tmp_path / "p.png"), "--rows", "2", "--cell", "64", "--json")
    assert report["random_weights"] is True and report["quality"] is None
    image = Image.open(tmp_path / "p.png").convert("RGB")
    assert (image.width, image.height) == (report["width"], report["height"]) == (3 * 64, RANDOM_BAND_HEIGHT + 2 * (64 + 14))
    band = [image.getpixel((x, y)) for x in range(0, image.width, 7) for y in (0, RANDOM_BAND_HEIGHT - 1)]
    assert band.count(RANDOM_BAND_COLOR) > 0.8 * len(band)  # red, with white text over part of it
    # The same store with real weights recorded: no band.
    real = tmp_path / "real"
    shutil.copytree(store[0], real)
    header = json.loads((real / "genview.json").read_text())
    (real / "genview.json").write_text(json.dumps({**header, "random_weights": False}))
    report = genview_json("preview", str(real), "--out", str(tmp_path / "q.png"), "--rows", "2", "--cell", "64", "--json")
    assert report["random_weights"] is False and report["height"] == 2 * (64 + 14)
    assert Image.open(tmp_path / "q.png").convert("RGB").getpixel((image.width - 1, 0)) == (255, 255, 255)


def test_a_recipe_run_resuming_a_plain_store_records_the_recipe(tmp_path, image_folder, tiny_weights, capsys):
    out = str(tmp_path / "store")
    plain = ["generate", str(image_folder), "--weights", tiny_weights("icgan"), "--k", "1", "--shard-size", "12",
             "--out", out, "--no-progress"]
    # daicgan-icgan's values spelled out: the same store as the recipe makes.
    assert main([*plain, "--model", "icgan", "--param", "truncation_mode=scaled", "--truncation", "0.8"]) == 0
    assert Store(out).spec["recipe"] is None
    assert main([*plain, "--recipe", "daicgan-icgan"]) == 0
    assert "all were already done" in capsys.readouterr().out
    assert Store(out).spec["recipe"] == "daicgan-icgan"
    # Another recipe of the same values resumes too, but the store keeps the name it has, and says so.
    header = json.loads((tmp_path / "store" / "genview.json").read_text())
    header["spec"]["recipe"] = "earlier-name"
    (tmp_path / "store" / "genview.json").write_text(json.dumps(header))
    assert main([*plain, "--recipe", "daicgan-icgan"]) == 0
    assert "records recipe earlier-name; daicgan-icgan has the same values" in capsys.readouterr().err
    assert Store(out).spec["recipe"] == "earlier-name"
