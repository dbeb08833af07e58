"""pull_store: copy a store from any fsspec URL to local disk, verify it, resume, refuse bad shards."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest

from genview.trainer_client import GenViewDataset, SinglePolicy, StoreFormatError, StoreVerificationError, pull_store
from genview.datastore.shardcheck import check_shard
from genview.trainer_client.store_index import StoreIndex


def to_memory(root: Path) -> str:
    """Upload a local store to fsspec's memory filesystem (a stand-in remote) and return its URL."""
    fs = fsspec.filesystem("memory")
    base = f"/remote-{uuid.uuid4().hex[:8]}"
    for path in root.rglob("*"):
        if path.is_file():
            fs.pipe(f"{base}/{path.relative_to(root).as_posix()}", path.read_bytes())
    return f"memory://{base}"


def test_pull_from_remote_copies_and_verifies(store, tmp_path):
    url = to_memory(store.root)
    done = []
    report = pull_store(url, str(tmp_path / "local"), progress=lambda i, n: done.append((i, n)))
    assert report.shards_copied == list(range(7)) and report.verified and report.bytes_copied > 0
    assert done[-1] == (7, 7)
    for path in store.root.rglob("*"):
        if path.is_file():
            assert (tmp_path / "local" / path.relative_to(store.root)).read_bytes() == path.read_bytes()
    ds = GenViewDataset(str(tmp_path / "local"), SinglePolicy(p=1.0, crop_size=8), shuffle=False)
    assert [s["source_id"] for s in ds] == store.ok_ids


def test_pull_resumes_and_skips_complete_shards(store, tmp_path):
    dest = tmp_path / "local"
    pull_store(store.url, str(dest))
    (dest / "stats" / "000003.json").unlink()  # as if interrupted before shard 3's marker
    report = pull_store(store.url, str(dest))
    assert report.shards_copied == [3] and report.shards_skipped == [0, 1, 2, 4, 5, 6]


def test_pull_refuses_a_shard_that_disagrees_with_its_manifest(store_copy, tmp_path):
    # Shard 1's tar replaced by shard 0's: right format, wrong content; its marker's sha256 no longer matches.
    store_copy.tar(1).write_bytes(store_copy.tar(0).read_bytes())
    dest = tmp_path / "local"
    with pytest.raises(StoreVerificationError, match="shard 000001") as info:
        pull_store(store_copy.url, str(dest))
    assert "sha256" in str(info.value) and "no sample in the tar" in str(info.value)
    assert not (dest / "stats" / "000001.json").exists()  # no marker: the shard is not there
    assert (dest / "stats" / "000002.json").exists()
    assert len(StoreIndex(str(dest)).shards) == 6


def test_the_shard_check_finds_wrong_member_sizes(store_copy):
    import io
    import tarfile

    tar_path = store_copy.tar(0)
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:
        for info, data in members:
            if info.name.endswith(".v1.jpg"):
                data = data + b"\0"
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    fs = fsspec.filesystem("file")
    check = check_shard(fs, str(store_copy.root), 0, k=3, sha256=True)  # marker read from stats/
    sizes = [p for p in check.problems if "v1.jpg is" in p]
    assert len(sizes) == 5 and all("manifest says" in p for p in sizes)
    assert [p for p in check.problems if p not in sizes] == [  # tarfile pads to 10 KiB: same size, new digest
        p for p in check.problems if "sha256" in p and "differs from its done marker" in p
    ]
    assert len(check.problems) == 6 and not check_shard(fs, str(store_copy.root), 1, k=3, sha256=True).problems


def test_pull_into_a_different_store_is_refused(store, interp_store, tmp_path):
    dest = tmp_path / "local"
    pull_store(store.url, str(dest))
    with pytest.raises(StoreFormatError, match="different store"):
        pull_store(interp_store.url, str(dest))


def test_format_v1_markers_are_read_and_kept(tmp_path):
    from tc_store_factory import build_store

    src = build_store(tmp_path / "src", shard_sizes=(2, 3), failed_in=(1,), format_version=1)
    assert [e.samples for e in StoreIndex(src.url).shards] == [2, 3]
    report = pull_store(src.url, str(tmp_path / "dest"))
    assert report.shards_copied == [0, 1]
    assert sorted(p.name for p in (tmp_path / "dest" / "manifest").glob("*.json")) == ["_000000.json", "_000001.json"]


def write_quality(root: Path) -> None:
    """Quality results as `genview quality` leaves them: settings, per-class and per-view tables, a per-shard marker."""
    import json

    import pyarrow as pa

    from genview.quality import tables

    (root / "quality" / "done").mkdir(parents=True)
    row = dict.fromkeys(tables.CLASSES_SCHEMA.names)
    classes = [{**row, "scope": "class", "label": "class0", "sources": 9, "views": 27, "fid": 210.0},
               {**row, "scope": "class", "label": "class1", "sources": 9, "views": 27, "fid": 90.0},
               {**row, "scope": "all", "label": None, "sources": 18, "views": 54, "fid": 120.0}]
    (root / "quality" / "classes.parquet").write_bytes(
        tables.table_bytes(pa.Table.from_pylist(classes, schema=tables.CLASSES_SCHEMA)))
    (root / "quality" / "views.parquet").write_bytes(tables.table_bytes(tables.VIEWS_SCHEMA.empty_table()))
    (root / "quality" / "done" / "000000.json").write_text(json.dumps({"shard": 0}))
    (root / "quality" / "quality.json").write_text(json.dumps({"networks": {}, "k_nn": 5, "complete": True}))


def test_pull_copies_quality_so_quality_filters_work_on_the_copy(store_copy, tmp_path):
    from genview.trainer_client import ViewFilter

    write_quality(store_copy.root)
    url = to_memory(store_copy.root)
    report = pull_store(url, str(tmp_path / "local"))
    assert report.quality_files == ["quality/done/000000.json", "quality/classes.parquet", "quality/views.parquet",
                                    "quality/quality.json"]
    for relative in report.quality_files:
        assert (tmp_path / "local" / relative).read_bytes() == (store_copy.root / relative).read_bytes()
    # The failure: ViewFilter(exclude=True) on a pulled store raised "needs ... quality tables".
    ds = GenViewDataset(str(tmp_path / "local"), SinglePolicy(p=1.0, crop_size=8), shuffle=False,
                        view_filter=ViewFilter(exclude=True))
    for sample in ds:
        assert (sample["view_index"] == -1) == (store_copy.labels[sample["source_id"]] == "class0")  # FID 210 >= 150


def test_pull_refuses_a_quality_table_that_does_not_read(store_copy, tmp_path):
    write_quality(store_copy.root)
    (store_copy.root / "quality" / "classes.parquet").write_bytes(b"PAR1 not a parquet file")
    dest = tmp_path / "local"
    with pytest.raises(StoreVerificationError, match="quality/classes.parquet does not read back"):
        pull_store(store_copy.url, str(dest))
    assert not (dest / "quality" / "classes.parquet").exists()
    assert (dest / "quality" / "quality.json").exists() and len(StoreIndex(str(dest)).shards) == 7
