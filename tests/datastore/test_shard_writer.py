"""The shard writer: commit order, atomicity, keys, readability without genview."""

from __future__ import annotations

import json
import tarfile

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from genview.datastore import layout
from genview.datastore.shard_writer import ShardWriter
from genview.datastore.store import Store


def test_commit_publishes_tar_manifest_then_marker(tmp_path):
    store = Store(str(tmp_path / "st"))
    store.prepare_dirs()
    writer = ShardWriter(store, 3)
    writer.write_sample("0000000001", {"src.jpg": b"abc", "v0.jpg": b"xyz", "json": b"{}"})
    writer.add_rows([{"key": "0000000001", "source_id": 1, "view": 0, "status": "ok", "shard": 3}])
    # Before commit nothing is visible under a final name.
    assert not (tmp_path / "st/shards/000003.tar").exists()
    assert store.done_shards() == set()
    assert len(store.leftovers(3)) == 1
    stats = writer.commit({"ok": 1})
    assert store.done_shards() == {3}
    assert stats["samples"] == 1 and stats["ok"] == 1 and len(stats["tar_sha256"]) == 64
    assert store.leftovers() == []
    names = tarfile.open(tmp_path / "st/shards/000003.tar").getnames()
    assert names == ["0000000001.json", "0000000001.src.jpg", "0000000001.v0.jpg"]
    assert pq.read_table(tmp_path / "st/manifest/000003.parquet").column("source_id").to_pylist() == [1]
    assert json.loads((tmp_path / "st/stats/000003.json").read_text())["tar"] == "shards/000003.tar"
    sample = next(iter(wds.WebDataset(str(tmp_path / "st/shards/000003.tar"), shardshuffle=False)))
    assert sample["__key__"] == "0000000001" and sample["v0.jpg"] == b"xyz"


def test_error_inside_writer_leaves_nothing(tmp_path):
    store = Store(str(tmp_path / "st"))
    store.prepare_dirs()
    with pytest.raises(RuntimeError):
        with ShardWriter(store, 0) as writer:
            writer.write_sample("0000000000", {"v0.jpg": b"1"})
            raise RuntimeError("generator crashed")
    assert list((tmp_path / "st/shards").iterdir()) == []
    assert store.done_shards() == set()


def test_keys_with_dots_are_refused(tmp_path):
    store = Store(str(tmp_path / "st"))
    store.prepare_dirs()
    writer = ShardWriter(store, 0)
    with pytest.raises(ValueError, match="dot"):
        writer.write_sample("a.b", {"v0.jpg": b"1"})
    writer.abort()
    assert store.leftovers() == []


def test_key_and_shard_names_fixed_width():
    assert layout.sample_key(7) == "0000000007"
    assert layout.shard_name(12) == "000012"
    assert layout.shard_pattern("/x", 3) == "/x/shards/{000000..000002}.tar"
