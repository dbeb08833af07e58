"""Three `genview generate` processes on one s3:// store (moto's S3 server): leases by conditional PutObject."""

from __future__ import annotations

import os
import sys

import fsspec

from genview.cli.main import main as cli
from genview.datastore.lease import ShardLeases, create_exclusive
from genview.datastore.store import Store
from genview.datastore.verify import verify_store
from genview.synthetic_data import make_image_folder

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pipeline"))
from test_leases import command, local_files, run_concurrently, same_content, shards_run  # noqa: E402


def s3_files(fs, root: str):
    return (lambda name: fs.cat_file(f"{root}/{name}"),
            lambda: [p[len(root) + 1:] for p in fs.find(root)])


def test_conditional_put_makes_one_winner(s3_bucket):
    store = Store(f"s3://{s3_bucket}/store")
    a, b = ShardLeases(store, expiry=60), ShardLeases(store, expiry=60)
    assert a.try_acquire(0) and not b.try_acquire(0)
    assert not create_exclusive(store.fs, a.path(0, 0), b"{}")  # If-None-Match: * refused with 412
    a.check(0)
    a.release(0)
    assert b.try_acquire(0)
    b.release_all()


def test_three_processes_split_an_s3_store(tmp_path, s3_bucket, tiny_weights):
    source = tmp_path / "src"
    make_image_folder(source, classes=3, per_class=4, size=64, seed=4)  # 12 sources -> 6 shards
    single = tmp_path / "single"
    assert cli(command(source, single, tiny_weights())[3:]) == 0  # the reference: one run, in this process

    out = f"s3://{s3_bucket}/store"
    results = run_concurrently([command(source, out, tiny_weights()) for _ in range(3)])
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
    assert sum(shards_run(r.stdout) for r in results) == 6  # every shard made exactly once
    report = verify_store(out, decode=True)
    assert report.ok and report.shards_done == 6, str(report)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    root = f"{s3_bucket}/store"
    assert not [p for p in fs.find(root) if "/leases/" in p]  # every lease given back
    same_content(*s3_files(fs, root), *local_files(single))
