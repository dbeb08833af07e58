"""Issue 11: after a driver SIGKILL its workers stop at once, so no shard is committed behind the dead job.

Ray itself reaps a dead driver's actors only once its GCS notices; on a cluster that took up to
100 s, during which a worker went on and committed another shard.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from local_cluster import env_for_cli

from genview.datastore.store import Store


def done_markers(out: Path) -> int:
    """Done shards of a store, through the store's own API (wherever its layout keeps the markers)."""
    return len(Store(str(out)).done_shards()) if (out / "genview.json").exists() else 0


def test_workers_exit_within_seconds_of_their_driver_being_killed(ray_cluster, fault_job, tmp_path):
    args, _, _ = fault_job
    out = tmp_path / "store"
    cmd = [sys.executable, "-m", "genview.cli.main", "generate", *args, "--out", str(out),
           "--ray-address", ray_cluster.address, "--workers", "2"]
    driver = subprocess.Popen(cmd, env=env_for_cli(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and done_markers(out) < 1 and driver.poll() is None:
            time.sleep(0.02)
        assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
        workers = ray_cluster.actor_processes("ray::ShardWorker")
        assert workers, "no ShardWorker process is running"
        os.kill(driver.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        driver.wait()
        done_at_kill = done_markers(out)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    while ray_cluster.actor_processes("ray::ShardWorker") and time.monotonic() - killed_at < 10:
        time.sleep(0.05)
    gone_after = time.monotonic() - killed_at
    print(f"workers gone {gone_after:.2f} s after the driver's SIGKILL")
    assert not ray_cluster.actor_processes("ray::ShardWorker"), "workers outlived their driver by 10 s"
    time.sleep(2)  # a worker still making its shard would have committed it by now
    assert done_markers(out) == done_at_kill, "a shard was committed after the driver was killed"
