"""The one shard check and the done-marker lookup (format v2 stats/ and v1 manifest/_), torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from genview.datastore import layout
from genview.datastore.shardcheck import check_shard
from genview.datastore.store import find_done_marker, list_done_markers

sys.path.insert(0, str(Path(__file__).parents[1] / "trainer_client"))
from tc_store_factory import build_store  # noqa: E402  (the contract-only store factory)

FS = fsspec.filesystem("file")


@pytest.mark.parametrize("version", [1, 2])
def test_done_markers_are_found_in_both_formats(tmp_path, version):
    store = build_store(tmp_path / "s", shard_sizes=(2, 3, 1), failed_in=(1,), format_version=version)
    root = str(store.root)
    markers = list_done_markers(FS, root)
    expected_dir = "stats" if version == 2 else "manifest"
    assert sorted(markers) == [0, 1, 2]
    assert all(Path(p).parent.name == expected_dir for p in markers.values())
    assert find_done_marker(FS, root, 1) == markers[1]
    assert find_done_marker(FS, root, 7) is None
    Path(markers[2]).unlink()
    assert sorted(list_done_markers(FS, root)) == [0, 1]  # a shard without its marker is not there
    assert layout.shard_done(root, 12, 2).endswith("/stats/000012.json")
    assert layout.shard_done(root, 12, 1).endswith("/manifest/_000012.json")


def test_a_sound_shard_has_no_problems_and_counts(tmp_path):
    store = build_store(tmp_path / "s", shard_sizes=(4, 3), failed_in=(1,), k=2)
    check = check_shard(FS, str(store.root), 1, k=2, sha256=True, decode=True,
                        planned_ids=store.shard_ids[1] + store.failed_ids)
    assert check.problems == [] and check.ok
    assert (check.ok_sources, check.failed_sources, check.views) == (3, 1, 6)


def test_damage_is_named(tmp_path):
    store = build_store(tmp_path / "s", shard_sizes=(4, 3), failed_in=(), k=2)
    root = str(store.root)
    tar = store.tar(0)
    tar.write_bytes(tar.read_bytes()[:3000])
    assert any("tar unreadable" in p for p in check_shard(FS, root, 0, k=2).problems)
    # Wrong k, unplanned sources, a missing marker: each is a named problem.
    problems = check_shard(FS, root, 1, k=3, planned_ids=[0]).problems
    assert any("expected 0..2" in p for p in problems) and any("has 2 views, the store's k is 3" in p for p in problems)
    assert any("not planned for this shard" in p for p in problems) and any("absent from the manifest" in p for p in problems)
    (store.root / "stats" / "000001.json").unlink()
    assert check_shard(FS, root, 1, k=2).problems == ["shard 000001: no done marker"]
    stats = {"tar_bytes": 1, "ok": 9}
    problems = check_shard(FS, root, 1, k=2, stats=stats)
    assert [p.split(":")[1].strip().split(" ")[0] for p in problems.problems] == ["tar", "done"]


def test_the_datastore_imports_no_torch():
    # Every module of the package, in a fresh interpreter: the store format must stay usable where
    # torch is not installed (the web service, a CLI on a laptop, outside readers).
    code = (
        "import importlib, json, pkgutil, sys, genview.datastore as d\n"
        "for m in pkgutil.iter_modules(d.__path__): importlib.import_module('genview.datastore.' + m.name)\n"
        "print(json.dumps(sorted(n for n in ('torch', 'torchvision', 'ray', 'diffusers', 'transformers', 'webdataset')"
        " if n in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_verify_runs_the_shard_check_and_sha256_finds_a_flipped_byte(tmp_path):
    from genview.cli.main import main
    from genview.datastore.verify import verify_store

    store = build_store(tmp_path / "s", shard_sizes=(3, 2), failed_in=(0,), k=2)
    report = verify_store(store.url, sha256=True, decode=True)
    assert report.ok, report.problems
    assert (report.ok_sources, report.failed_sources, report.views) == (5, 1, 10)
    tar = store.tar(1)
    data = bytearray(tar.read_bytes())
    data[2000] ^= 0xFF  # inside a member's bytes: sizes and headers still agree
    tar.write_bytes(bytes(data))
    assert verify_store(store.url, sha256=False).ok  # sizes and headers alone cannot see it
    assert main(["verify", store.url, "--no-sha256"]) == 0
    assert main(["verify", store.url]) == 1  # the default compares each tar's sha256 with its marker
    assert any("sha256" in p and "000001" in p for p in verify_store(store.url, sha256=True).problems)
