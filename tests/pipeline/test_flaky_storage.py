"""Transient vs permanent I/O errors, on a real file system that fails its first N opens (a registered fsspec protocol)."""

from __future__ import annotations

import threading

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

from genview.cli.main import main as cli
from genview.datastore import retry
from genview.datastore.store import Store
from genview.datastore.verify import verify_store
from genview.synthetic_data import make_image_folder

K = 2


class FlakyFileSystem(LocalFileSystem):
    """The local disk under `flaky://`, whose next `fail_next` opens of matching paths raise an OSError (EIO)."""

    protocol = ("flaky",)
    fail_next = 0
    match = ""
    failures = 0
    _lock = threading.Lock()

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        if path.startswith("flaky://"):
            path = path[len("flaky://"):]
        return super()._strip_protocol(path)

    def unstrip_protocol(self, name):
        return "flaky://" + self._strip_protocol(name)

    def _open(self, path, mode="rb", **kwargs):
        with FlakyFileSystem._lock:
            failing = FlakyFileSystem.fail_next > 0 and FlakyFileSystem.match in str(path)
            if failing:
                FlakyFileSystem.fail_next -= 1
                FlakyFileSystem.failures += 1
        if failing:
            raise OSError(5, "Input/output error (injected)", str(path))
        return super()._open(path, mode=mode, **kwargs)


@pytest.fixture()
def flaky(monkeypatch):
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    monkeypatch.setattr(retry, "POLICY", retry.RetryPolicy(attempts=4, initial=0.01, maximum=0.05))
    FlakyFileSystem.failures = 0
    yield FlakyFileSystem
    FlakyFileSystem.fail_next = 0


def generate(source: str, out: str, weights: str) -> int:
    return cli(["generate", source, "--model", "icgan", "--weights", weights, "--out", out, "--k", str(K),
                "--shard-size", "4", "--batch-size", "4", "--device", "cpu", "--no-progress"])


def test_transient_read_errors_are_retried_not_recorded(tmp_path, flaky, tiny_weights):
    make_image_folder(tmp_path / "src", classes=2, per_class=4, size=64, seed=6)
    flaky.match, flaky.fail_next = "/src/", 3  # the first 3 source reads fail once each
    out = str(tmp_path / "store")
    assert generate(f"flaky://{tmp_path}/src", out, tiny_weights()) == 0
    assert flaky.failures == 3
    report = verify_store(out)
    assert report.ok and (report.ok_sources, report.failed_sources) == (8, 0), str(report)


def test_read_errors_that_outlive_the_retries_fail_the_shard_not_the_source(tmp_path, flaky, tiny_weights, capsys):
    make_image_folder(tmp_path / "src", classes=2, per_class=4, size=64, seed=6)
    flaky.match, flaky.fail_next = "class_01/img_0002", 10**6  # one source never reads
    out = str(tmp_path / "store")
    assert generate(f"flaky://{tmp_path}/src", out, tiny_weights()) == 2
    err = capsys.readouterr().err
    assert "1 shard(s) could not be made because of I/O errors" in err and "Rerun the same command" in err, err
    store = Store(out)
    assert len(store.done_shards()) == 1  # the other shard was made
    assert "failed" not in store.manifest(columns=["status"]).column("status").to_pylist()
    assert not store.leftovers()

    flaky.fail_next = 0  # the storage recovers: a rerun makes the shard, and no source was ever marked failed
    assert generate(f"flaky://{tmp_path}/src", out, tiny_weights()) == 0
    report = verify_store(out)
    assert report.ok and (report.ok_sources, report.failed_sources) == (8, 0), str(report)


def test_missing_source_is_a_failed_row_not_a_retry(tmp_path, flaky, tiny_weights):
    make_image_folder(tmp_path / "src", classes=1, per_class=4, size=64, seed=6)
    listing = tmp_path / "list.txt"
    listing.write_text("src/class_00/img_0000.jpg\nsrc/class_00/img_0001.jpg\nsrc/gone.jpg\n")
    out = str(tmp_path / "store")
    assert generate(str(listing), out, tiny_weights()) == 0
    report = verify_store(out)
    assert report.ok and (report.ok_sources, report.failed_sources) == (2, 1), str(report)


def test_transient_store_write_errors_redo_the_shard(tmp_path, flaky, tiny_weights):
    make_image_folder(tmp_path / "src", classes=2, per_class=4, size=64, seed=6)
    flaky.match, flaky.fail_next = "/shards/", 2  # the first two temp tars cannot be opened
    out = f"flaky://{tmp_path}/store"
    assert generate(str(tmp_path / "src"), out, tiny_weights()) == 0
    assert flaky.failures == 2
    report = verify_store(str(tmp_path / "store"))
    assert report.ok and report.shards_done == 2 and report.failed_sources == 0, str(report)
