"""Many hands on one store: concurrent `genview generate` processes split the shards through leases."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genview.cli.main import main as cli
from genview.datastore.lease import ShardLeases, create_exclusive
from genview.datastore.store import Store
from genview.datastore.verify import verify_store
from genview.synthetic_data import make_image_folder

K = 2


def env() -> dict[str, str]:
    """This process's environment (read when a child starts: S3 tests set the endpoint at run time)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def command(source, out, weights, *extra: str, shard_size: int = 2, k: int = K) -> list[str]:
    return [sys.executable, "-m", "genview.cli.main", "generate", str(source), "--model", "icgan", "--weights", weights,
            "--out", str(out), "--k", str(k), "--shard-size", str(shard_size), "--batch-size", "4", "--device", "cpu",
            "--no-progress", *extra]


def shards_run(stdout: str) -> int:
    """The `N run now` count of a job summary (0 when it found everything done)."""
    match = re.search(r"(\d+) run now", stdout)
    return int(match.group(1)) if match else 0


def content_digests(read, names) -> dict[str, str]:
    return {name: hashlib.sha256(read(name)).hexdigest() for name in names}


def same_content(read_a, list_a, read_b, list_b) -> None:
    """Tars, manifest fragments, per-shard summaries and member indexes and sources.parquet byte-identical;
    done markers agree on every content field (their timings differ)."""
    def data_files(names):
        return sorted(n for n in names if n.startswith(("shards/", "manifest/")) or n == "sources.parquet"
                      or (n.startswith("stats/") and n.endswith(".parquet")))

    names = data_files(list_a())
    assert names == data_files(list_b())
    assert content_digests(read_a, names) == content_digests(read_b, names)
    for name in (n for n in list_a() if n.startswith("stats/") and n.endswith(".json")):
        a, b = json.loads(read_a(name)), json.loads(read_b(name))
        for field in ("tar_bytes", "tar_sha256", "samples", "tar_members", "sources", "ok", "failed", "views"):
            assert a[field] == b[field], (name, field)


def local_files(root: Path):
    return (lambda name: (root / name).read_bytes(),
            lambda: [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()])


@pytest.fixture(scope="module")
def twelve(tmp_path_factory):
    source = tmp_path_factory.mktemp("lease-src")
    make_image_folder(source, classes=3, per_class=4, size=64, seed=4)  # 12 sources -> 6 shards of 2
    return source


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, twelve, tiny_weights):
    out = tmp_path_factory.mktemp("lease-single") / "store"
    run = subprocess.run(command(twelve, out, tiny_weights()), env=env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return out


def run_concurrently(commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen(c, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    results = []
    for proc, cmd in zip(procs, commands):
        out, err = proc.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return results


def test_three_processes_split_the_shards_locally(tmp_path, twelve, single_run, tiny_weights):
    out = tmp_path / "store"
    results = run_concurrently([command(twelve, out, tiny_weights()) for _ in range(3)])
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "Error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert sum(shards_run(r.stdout) for r in results) == 6  # every shard made exactly once
    report = verify_store(str(out), decode=True)
    assert report.ok and report.shards_done == 6, str(report)
    assert not list((out / "leases").iterdir())  # every lease given back
    same_content(*local_files(out), *local_files(single_run))


def test_static_split_like_a_slurm_array(tmp_path, twelve, single_run, tiny_weights, capsys):
    out = tmp_path / "store"
    made = []
    for index in range(2):  # array tasks 0 and 1 of 2 (they need not overlap in time)
        capsys.readouterr()
        assert cli(command(twelve, out, tiny_weights(), "--shards", f"{index}/2")[3:]) == 0
        made.append(sorted(int(p.stem) for p in (out / "stats").glob("*.json")))
    assert made == [[0, 2, 4], [0, 1, 2, 3, 4, 5]]
    same_content(*local_files(out), *local_files(single_run))


def test_bad_shard_split_is_refused(tmp_path, twelve, tiny_weights, capsys):
    assert cli(command(twelve, tmp_path / "s", tiny_weights(), "--shards", "2/2")[3:]) == 2
    err = capsys.readouterr().err
    assert "--shards" in err and "0 <= I < N" in err, err


def test_killed_holder_on_another_machine_is_taken_over_after_expiry(tmp_path, tiny_weights):
    source, out = tmp_path / "src", tmp_path / "store"
    make_image_folder(source, classes=2, per_class=4, size=64, seed=2)  # one shard of 8 sources
    slow = command(source, out, tiny_weights(), "--lease-seconds", "4", shard_size=8, k=24)
    first = subprocess.Popen(slow, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lease = out / "leases" / "000000.000000.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "shards").glob(".000000.tar.*.tmp")):
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)  # mid-shard: its temp tar is there, no marker
    first.wait()
    assert lease.exists() and not (out / "stats" / "000000.json").exists()
    # The holder ran on another machine (as on a shared store): only its heartbeat can tell it is dead.
    content = json.loads(lease.read_text())
    lease.write_text(json.dumps({**content, "owner": "another-host:4242:abcd"}))
    left_at = content["expires"]

    second = subprocess.run(command(source, out, tiny_weights(), shard_size=8, k=24), env=env(),
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert time.time() >= left_at  # it waited for the expiry before taking the shard
    assert shards_run(second.stdout) == 1
    report = verify_store(str(out))
    assert report.ok, str(report)  # the killed attempt's temp tar was removed too
    assert not list((out / "leases").iterdir())


def test_only_one_of_two_creates_wins(tmp_path):
    store = Store(str(tmp_path / "s"))
    store.prepare_dirs()
    a, b = ShardLeases(store, expiry=60), ShardLeases(store, expiry=60)
    assert a.try_acquire(3) and not b.try_acquire(3)
    a.check(3)
    assert not create_exclusive(store.fs, a.path(3, 0), b"{}")
    a.release(3)
    assert b.try_acquire(3)
    b.release_all()
