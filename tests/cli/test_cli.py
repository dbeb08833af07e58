"""The CLI as users type it: help, generate -> verify -> inspect -> preview, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from genview.cli.main import build_parser, main
from genview.datastore.preview import RANDOM_BAND_HEIGHT


def test_every_verb_has_help(capsys):
    verbs = ["generate", "verify", "inspect", "preview", "pull", "models", "train", "demo"]
    for verb in verbs:
        with pytest.raises(SystemExit) as info:
            main([verb, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "usage: genview " + verb in out
    generate_help = build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    for flag in ("--shard-size", "--view-size", "--best-of", "--truncation", "--overwrite", "--format"):
        assert flag in generate_help


def test_generate_verify_inspect_preview(tmp_path, image_folder, tiny_weights, capsys):
    out = tmp_path / "store"
    code = main(["generate", str(image_folder), "--model", "icgan", "--k", "2", "--weights", tiny_weights(),
                 "--out", str(out), "--shard-size", "5", "--view-size", "24", "--format", "webp", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    assert "12 sources -> 24 views, 0 failed" in captured.out
    assert "RANDOMLY INITIALISED" in captured.err
    assert main(["verify", str(out), "--decode"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["inspect", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["views"] == 24 and summary["random_weights"] is True
    assert [row["label"] for row in summary["similarity_by_label"]] == ["class_00", "class_01", "class_02"]
    assert main(["inspect", str(out)]) == 0
    assert "RANDOM weights" in capsys.readouterr().out
    grid_path = tmp_path / "grid.png"
    assert main(["preview", str(out), "--out", str(grid_path), "--rows", "3", "--order", "worst", "--cell", "32"]) == 0
    grid = Image.open(grid_path)
    assert grid.size == (3 * 32, RANDOM_BAND_HEIGHT + 3 * (32 + 14))  # random weights: the red band on top
    import io
    import tarfile

    with tarfile.open(out / "shards" / "000000.tar") as tar:
        name = next(n for n in tar.getnames() if n.endswith(".v1.webp"))
        view = Image.open(io.BytesIO(tar.extractfile(name).read()))
    assert view.format == "WEBP" and view.size == (24, 24)


def test_verify_fails_on_a_damaged_store(tmp_path, image_folder, tiny_weights, capsys):
    out = tmp_path / "store"
    assert main(["generate", str(image_folder), "--model", "icgan", "--k", "1", "--weights", tiny_weights(),
                 "--out", str(out), "--shard-size", "6", "--no-progress"]) == 0
    tar = out / "shards" / "000001.tar"
    tar.write_bytes(tar.read_bytes()[:700])
    capsys.readouterr()
    assert main(["verify", str(out)]) == 1
    assert "shard 000001" in capsys.readouterr().out


def test_default_out_is_named_after_source_model_and_k(tmp_path, image_folder, tiny_weights, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", str(image_folder), "--model", "icgan", "--k", "1", "--weights", tiny_weights(), "--no-progress"]) == 0
    assert (tmp_path / f"{image_folder.name}-icgan-k1" / "genview.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--k", "0", "--weights", "w"], "--k: Input should be greater than or equal to 1"),
        ([], "--weights is required"),
    ],
)
def test_bad_generate_arguments_are_clear(tmp_path, image_folder, capsys, args, message):
    code = main(["generate", str(image_folder), "--model", "icgan", "--out", str(tmp_path / "x"), "--no-progress", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_models_init_marks_random_weights(tmp_path):
    result = subprocess.run([sys.executable, "-m", "genview.cli.main", "models", "init", "icgan", "--preset", "tiny",
                             "--out", str(tmp_path / "w")], capture_output=True, text=True, check=True)
    assert "RANDOMLY initialised" in result.stdout
    assert (tmp_path / "w" / "genview_random_weights.json").exists()
    assert sorted(p.name for p in (tmp_path / "w").glob("*.pth")) != []


def test_models_info_counts_the_full_icgan(capsys):
    assert main(["models", "info", "icgan", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    generator = next(s for s in report["stages"] if s["name"] == "generator")
    assert round(generator["params"] / 1e6, 1) == 90.0
    assert 1e11 < report["flops_per_view"] < 3e11
    assert main(["models", "info", "icgan"]) == 0
    assert "A100" in capsys.readouterr().out


def test_pull_copies_and_verifies(tmp_path, image_folder, tiny_weights, capsys):
    src = tmp_path / "store"
    assert main(["generate", str(image_folder), "--model", "icgan", "--k", "1", "--weights", tiny_weights(),
                 "--out", str(src), "--shard-size", "5", "--no-progress"]) == 0
    assert main(["pull", str(src), "--to", str(tmp_path / "copy")]) == 0
    assert "3 shards copied" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "copy")]) == 0
    assert main(["pull", str(src), "--to", str(tmp_path / "copy")]) == 0
    assert "0 shards copied, 3 already there" in capsys.readouterr().out
