"""Sources and store on object storage (a real S3 server on 127.0.0.1): generate, verify, inspect, resume."""

from __future__ import annotations

import json

import fsspec
import pytest

from genview.cli.main import main as cli
from genview.datastore.inspect import inspect_store
from genview.datastore.sources import list_sources
from genview.datastore.store import Store
from genview.datastore.verify import verify_store
from genview.synthetic_data import make_image_folder

K = 2


def s3fs_fresh():
    """An S3 filesystem with no cached listings (the code under test uses its own instances)."""
    return fsspec.filesystem("s3", skip_instance_cache=True)


@pytest.fixture()
def s3_source(tmp_path, s3_bucket):
    """Upload an ImageFolder tree of 3 classes x 4 images plus one corrupt 'jpg' to s3://BUCKET/src."""
    local = tmp_path / "src"
    make_image_folder(local, classes=3, per_class=4, size=64, seed=5)
    (local / "class_01" / "zz_truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    s3_fs = s3fs_fresh()
    s3_fs.put(str(local), f"{s3_bucket}/src", recursive=True)
    return f"s3://{s3_bucket}/src"


def generate_cmd(source: str, out: str, weights: str) -> list[str]:
    return ["generate", source, "--model", "icgan", "--weights", weights, "--out", out, "--k", str(K),
            "--shard-size", "4", "--batch-size", "4", "--device", "cpu", "--no-progress"]


def test_list_sources_from_s3_folder_and_list_file(s3_source, s3_bucket):
    table = list_sources(s3_source)
    assert table.num_rows == 13
    assert all(uri.startswith(f"s3://{s3_bucket}/src/class_") for uri in table.column("uri").to_pylist())
    assert sorted(set(table.column("label").to_pylist())) == ["class_00", "class_01", "class_02"]
    s3_fs = s3fs_fresh()
    s3_fs.pipe(f"{s3_bucket}/lists/two.txt", b"../src/class_00/img_0000.jpg\ns3://%s/src/class_02/img_0003.jpg\n" % s3_bucket.encode())
    listed = list_sources(f"s3://{s3_bucket}/lists/two.txt").column("uri").to_pylist()
    assert listed == [f"s3://{s3_bucket}/src/class_00/img_0000.jpg", f"s3://{s3_bucket}/src/class_02/img_0003.jpg"]


def test_generate_verify_inspect_resume_on_s3(s3_source, s3_bucket, tiny_weights, capsys):
    out = f"s3://{s3_bucket}/store"
    assert cli(generate_cmd(s3_source, out, tiny_weights())) == 0
    # An object store has no directory mtimes: no folder fingerprint, so every rerun lists it again.
    assert Store(out).read_header()["source_folder"] is None
    report = verify_store(out, decode=True)
    assert report.ok, str(report)
    assert (report.shards_done, report.ok_sources, report.failed_sources, report.views) == (4, 12, 1, 12 * K)

    s3_fs = s3fs_fresh()
    root = f"{s3_bucket}/store"
    names = sorted(p.rsplit("/", 1)[1] for p in s3_fs.ls(f"{root}/shards"))
    assert names == ["000000.tar", "000001.tar", "000002.tar", "000003.tar"]  # no temporary leftovers
    manifest = Store(out).manifest().to_pylist()
    pairs = [(r["key"], r["view"]) for r in manifest if r["status"] == "ok"]
    assert len(pairs) == len(set(pairs)) == 12 * K
    assert [r["source_uri"].rsplit("/", 1)[1] for r in manifest if r["status"] == "failed"] == ["zz_truncated.jpg"]

    summary = inspect_store(out)
    assert (summary["views"], summary["failed_sources"], summary["shards"]) == (12 * K, 1, {"planned": 4, "done": 4})
    capsys.readouterr()
    assert cli(["inspect", out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["views"] == 12 * K
    assert cli(["verify", out]) == 0

    # Resume: drop one shard's done marker (as if the job died before it); a rerun redoes only that shard.
    before = {p: s3_fs.info(p)["LastModified"] for p in s3_fs.ls(f"{root}/shards")}
    redo_tar = f"{root}/shards/000002.tar"
    redo_bytes = s3_fs.cat_file(redo_tar)
    s3_fs.rm(f"{root}/stats/000002.json")
    assert not verify_store(out).ok
    assert cli(generate_cmd(s3_source, out, tiny_weights())) == 0
    s3_fs = s3fs_fresh()
    after = {p: s3_fs.info(p)["LastModified"] for p in s3_fs.ls(f"{root}/shards")}
    assert set(after) == set(before)
    assert [p for p in after if after[p] != before[p]] == [redo_tar]
    assert s3_fs.cat_file(redo_tar) == redo_bytes  # the redone shard is byte-identical (determinism)
    report = verify_store(out, decode=True)
    assert report.ok, str(report)
    assert report.views == 12 * K
