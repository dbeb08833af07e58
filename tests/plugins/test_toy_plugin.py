"""An outside generator (tests/plugins/genview_toy_plugin, installed by path) through every door: the
entry point, `--model package.module:Class`, the CLI, resume, `verify`, and Ray workers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from genview.datastore.verify import verify_store

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def genview(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the genview CLI as a user does (a new process: entry points read from installed metadata)."""
    env = {k: v for k, v in ENV.items() if k not in ("GENVIEW_RAY_ADDRESS", "RAY_ADDRESS")}
    return subprocess.run([sys.executable, "-m", "genview.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from genview.synthetic_data import make_image_folder

    root = tmp_path_factory.mktemp("toy-src") / "imgs"
    make_image_folder(root, classes=2, per_class=5, size=32, seed=3)
    return root


@pytest.fixture(scope="module")
def toy_weights(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy-weights") / "toy"
    done = genview("models", "init", "toy", "--preset", "tiny", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "RANDOMLY initialised toy" in done.stdout
    return out


def members(tar_path: Path) -> dict[str, bytes]:
    """Tar member name -> bytes, without the per-sample json (it names the source's path)."""
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if not m.name.endswith(".json")}


def test_models_list_shows_five_built_ins_and_the_plugin_with_its_origin():
    done = genview("models", "list")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert list(lines) == ["icgan", "cc-icgan", "unclip", "eldm", "sd-image-variations", "toy"]
    assert "entry point: genview 0.1.0 (built in)" in lines["sd-image-variations"]
    assert "entry point: genview-toy-plugin 0.1.0" in lines["toy"] and "built in" not in lines["toy"]
    listed = json.loads(genview("models", "list", "--json").stdout)
    assert [e["name"] for e in listed if e["builtin"]] == ["icgan", "cc-icgan", "unclip", "eldm", "sd-image-variations"]


def test_models_info_lists_the_plugins_params_and_flops():
    done = genview("models", "info", "toy")
    assert done.returncode == 0, done.stderr
    assert "sigma   float  0.5      a number (float) in [0, 10]" in done.stdout
    assert "invert  bool   false    true or false" in done.stdout
    assert "toy (tiny preset)" in done.stdout and "decoder" in done.stdout


def test_generate_verify_and_resume(tmp_path, images, toy_weights):
    out = tmp_path / "store"
    args = ["generate", str(images), "--model", "toy", "--weights", str(toy_weights), "--k", "3", "--shard-size", "4",
            "--param", "sigma=0.25", "--param", "invert=true", "--out", str(out), "--no-progress"]
    done = genview(*args)
    assert done.returncode == 0, done.stderr
    assert "10 sources -> 30 views, 0 failed sources (3 shards, 3 run now" in done.stdout
    assert "RANDOM weights" in done.stdout
    header = json.loads((out / "genview.json").read_text())
    assert header["spec"]["model"] == "toy" if "spec" in header else header["model"] == "toy"
    assert "'sigma': 0.25" in repr(header) and "'invert': True" in repr(header)
    assert verify_store(str(out), decode=True).ok
    assert genview("verify", str(out)).returncode == 0

    # Resume: a rerun keeps done shards; a lost shard is remade, byte for byte.
    kept = members(out / "shards" / "000000.tar")
    again = genview(*args)
    assert again.returncode == 0 and "all were already done" in again.stdout, again.stdout + again.stderr
    for name in ("shards/000001.tar", "stats/000001.json"):
        (out / name).unlink()
    before = (out / "shards" / "000000.tar").stat().st_mtime_ns
    redone = genview(*args)
    assert redone.returncode == 0 and "1 run now" in redone.stdout, redone.stdout + redone.stderr
    assert (out / "shards" / "000000.tar").stat().st_mtime_ns == before
    assert members(out / "shards" / "000000.tar") == kept
    assert genview("verify", str(out)).returncode == 0


def test_import_path_form_makes_the_same_views(tmp_path, images, toy_weights):
    common = ["--weights", str(toy_weights), "--k", "2", "--shard-size", "10", "--no-progress"]
    by_name = genview("generate", str(images), "--model", "toy", "--out", str(tmp_path / "a"), *common)
    by_path = genview("generate", str(images), "--model", "genview_toy_plugin.model:ToyGenerator",
                      "--out", str(tmp_path / "b"), *common)
    assert by_name.returncode == 0 and by_path.returncode == 0, by_name.stderr + by_path.stderr
    assert members(tmp_path / "a/shards/000000.tar") == members(tmp_path / "b/shards/000000.tar")


def test_bad_plugin_params_fail_fast_naming_the_param(tmp_path, images, toy_weights):
    start = time.monotonic()
    done = genview("generate", str(images), "--model", "toy", "--weights", str(toy_weights), "--param", "sigma=lots",
                   "--out", str(tmp_path / "never"))
    assert done.returncode == 2
    assert "--param sigma: expected a number (float) in [0, 10], got 'lots'" in done.stderr
    assert time.monotonic() - start < 30  # no model is loaded (the bound is loose: a loaded 2-core machine)
    done = genview("generate", str(images), "--model", "toy", "--weights", str(toy_weights), "--param", "sigma=11",
                   "--out", str(tmp_path / "never"))
    assert done.returncode == 2 and "--param sigma: expected a number (float) in [0, 10], got 11.0" in done.stderr
    assert not (tmp_path / "never").exists()


def test_ray_workers_load_the_plugin_and_make_the_in_process_views(tmp_path, images, toy_weights):
    common = ["--model", "toy", "--weights", str(toy_weights), "--k", "2", "--shard-size", "5", "--no-progress"]
    local = genview("generate", str(images), *common, "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    ray = genview("generate", str(images), *common, "--out", str(tmp_path / "ray"), "--workers", "1", timeout=600)
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert "10 sources -> 20 views" in ray.stdout
    for tar in sorted((tmp_path / "local" / "shards").glob("*.tar")):
        assert members(tmp_path / "ray" / "shards" / tar.name) == members(tar), tar.name
    assert verify_store(str(tmp_path / "ray")).ok
