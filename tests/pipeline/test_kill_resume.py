"""SIGKILL the CLI mid-job, then rerun: no partial tar under a final name, no holes, no duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time

from genview.datastore.store import Store
from genview.datastore.verify import verify_store
from genview.synthetic_data import make_image_folder

K = 2


def command(source, out, weights):
    """The generate command line, run as a separate process so it can be killed."""
    return [
        sys.executable, "-m", "genview.cli.main", "generate", str(source), "--model", "icgan", "--k", str(K),
        "--weights", weights, "--out", str(out), "--shard-size", "3", "--batch-size", "2", "--no-progress",
    ]


def test_sigkill_mid_shard_then_resume(tmp_path, tiny_weights):
    source = tmp_path / "src"
    make_image_folder(source, classes=2, per_class=12, size=64, seed=3)  # 24 sources, 8 shards
    out = tmp_path / "st"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command(source, out, tiny_weights()), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    # Kill as soon as at least one shard is done but the job is not: that is mid-job, mid-shard.
    while time.monotonic() < deadline:
        done = list((out / "stats").glob("*.json")) if (out / "stats").exists() else []
        if len(done) >= 1:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_after_kill = len(list((out / "stats").glob("*.json")))
    assert 1 <= done_after_kill < 8, "the kill should land mid-job"

    # Nothing partial under a final name: every final tar reads to its end.
    for tar_path in (out / "shards").glob("[0-9]*.tar"):
        with tarfile.open(tar_path) as tar:
            tar.getmembers()
    assert not verify_store(str(out)).ok  # incomplete store is reported as such

    rerun = subprocess.run(command(source, out, tiny_weights()), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = verify_store(str(out), decode=True)
    assert report.ok, str(report)
    manifest = Store(str(out)).manifest().to_pylist()
    pairs = [(r["key"], r["view"]) for r in manifest if r["status"] == "ok"]
    assert len(pairs) == len(set(pairs)) == 24 * K
    assert not list((out / "shards").glob(".*"))  # no temporary leftovers

    # Determinism: the resumed store equals a clean run byte for byte.
    clean = tmp_path / "clean"
    subprocess.run(command(source, clean, tiny_weights()), env=env, check=True, capture_output=True, timeout=300)
    for tar_path in sorted((clean / "shards").glob("*.tar")):
        assert tar_path.read_bytes() == (out / "shards" / tar_path.name).read_bytes(), tar_path.name
