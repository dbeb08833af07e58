"""Faults on a real local Ray cluster (head + 2 worker nodes): a worker process, the driver, a whole node.

After each, the store is complete and exact: verify passes, N_ok x K views, no duplicate (key, view),
no partial or temporary file, and every tar is byte-identical to a clean in-process run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from local_cluster import descendants, env_for_cli

from genview.cli.main import main as cli
from genview.datastore.store import Store
from genview.datastore.verify import verify_store
from genview.pipeline import GenerateSpec, generate
from genview.pipeline.ray_backend import RayBackend

N_OK = 20  # the fault job's 21 sources minus the one broken file
K = 3
SHARDS = 7


def done_markers(out: Path) -> int:
    """Committed shards so far (through the store's API: format v2 keeps the markers in stats/)."""
    return len(Store(str(out)).done_shards()) if (out / "genview.json").exists() else 0


def temp_tars(out: Path) -> int:
    """Shard tars being written (hidden temporary names) right now."""
    return len(list((out / "shards").glob(".*.tmp"))) if (out / "shards").exists() else 0


def assert_complete_and_clean(out: Path, clean: Path) -> None:
    """The store checks every fault test ends with."""
    report = verify_store(str(out), decode=True)
    assert report.ok, str(report)
    assert cli(["verify", str(out)]) == 0
    assert (report.shards_done, report.ok_sources, report.failed_sources) == (SHARDS, N_OK, 1)
    rows = Store(str(out)).manifest().to_pylist()
    pairs = [(r["key"], r["view"]) for r in rows if r["status"] == "ok"]
    assert len(pairs) == len(set(pairs)) == N_OK * K
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"{i:06d}.tar" for i in range(SHARDS)]
    assert not [p for p in (out / "manifest").iterdir() if p.name.startswith(".")]
    for tar in sorted((clean / "shards").glob("*.tar")):
        assert (out / "shards" / tar.name).read_bytes() == tar.read_bytes(), f"{tar.name} differs from the clean run"


def kill_mid_shard(cluster, out: Path, action, timeout: float = 180.0) -> threading.Thread:
    """In a thread: once a shard is committed and a worker is inside another, call action(pid, node) once."""
    hits: list = []

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done_markers(out) >= 1:
                busy = cluster.actor_processes("ray::ShardWorker.run")
                # As many unpublished tars as busy workers: none of them is in its commit (likely).
                if busy and temp_tars(out) >= len(busy):
                    pid, _, node = busy[0]
                    action(pid, node)
                    hits.append((pid, node))
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, name="fault-injector", daemon=True)
    thread.hits = hits
    thread.start()
    return thread


def test_worker_process_killed_mid_shard(ray_cluster, fault_job, clean_store, tmp_path):
    out = tmp_path / "store"
    backend = RayBackend(address=ray_cluster.address, workers=2)
    injector = kill_mid_shard(ray_cluster, out, lambda pid, node: os.kill(pid, signal.SIGKILL))
    summary = generate(GenerateSpec(out=str(out), **fault_job[1]), progress=False, backend=backend)
    injector.join(timeout=5)
    assert injector.hits, "the fault was never injected"
    assert backend.retried, "no shard attempt was lost: the kill did not land mid-shard"
    (killed_pid, _), = injector.hits
    for shard, _ in backend.retried:
        # Redone by another process (the restarted actor or the other one), or, when the kill came
        # between its commit and the driver hearing of it, found whole by its done marker.
        assert shard in backend.found_done or backend.committed_by[shard]["pid"] != killed_pid
    assert (summary.ok, summary.views, summary.failed) == (N_OK, N_OK * K, 1)
    assert_complete_and_clean(out, clean_store)


def test_driver_killed_then_rerun_resumes(ray_cluster, fault_job, clean_store, tmp_path):
    out = tmp_path / "store"
    cmd = [sys.executable, "-m", "genview.cli.main", "generate", *fault_job[0], "--out", str(out),
           "--ray-address", ray_cluster.address, "--workers", "2"]
    driver = subprocess.Popen(cmd, env=env_for_cli(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and done_markers(out) < 1 and driver.poll() is None:
            time.sleep(0.02)
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait()
    assert 1 <= done_markers(out) < SHARDS, "the driver should die mid-job"
    # The actors belonged to the dead driver: Ray reaps them, so nothing writes behind the rerun's back.
    deadline = time.monotonic() + 60
    while ray_cluster.actor_processes("ray::ShardWorker") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ray_cluster.actor_processes("ray::ShardWorker")
    assert not verify_store(str(out)).ok

    rerun = subprocess.run(cmd, env=env_for_cli(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{N_OK} sources -> {N_OK * K} views, 1 failed" in rerun.stdout
    assert_complete_and_clean(out, clean_store)


def test_worker_node_killed_job_completes_on_the_other(ray_cluster, fault_job, clean_store, tmp_path):
    out = tmp_path / "store"
    backend = RayBackend(address=ray_cluster.address, workers=2)
    dead_pids: set[int] = set()

    def kill_node(pid, node):
        dead_pids.update([node.proc.pid, *descendants(node.proc.pid)])
        ray_cluster.kill_node(node)

    injector = kill_mid_shard(ray_cluster, out, kill_node)
    summary = generate(GenerateSpec(out=str(out), **fault_job[1]), progress=False, backend=backend)
    injector.join(timeout=5)
    assert injector.hits, "the fault was never injected"
    assert backend.retried, "no shard attempt was lost: the kill did not land mid-shard"
    (_, dead_node), = injector.hits
    assert not dead_node.alive
    for shard, _ in backend.retried:  # redone by a process of the node that is still up (or found committed)
        assert shard in backend.found_done or backend.committed_by[shard]["pid"] not in dead_pids
    assert (summary.ok, summary.views, summary.failed) == (N_OK, N_OK * K, 1)
    assert_complete_and_clean(out, clean_store)


def test_a_ray_driver_leases_a_shard_only_when_it_hands_it_to_a_worker(ray_cluster, fault_job, clean_store, tmp_path):
    # Two actors: at most two shards leased at any time (each claimed as it is handed out, given back at its
    # commit), so another driver on the same store finds the rest free instead of all of them leased at start.
    out = tmp_path / "store"
    most, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            leases = out / "leases"
            if leases.exists():
                most[0] = max(most[0], len([p for p in leases.iterdir() if not p.name.startswith(".")]))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        summary = generate(GenerateSpec(out=str(out), **fault_job[1]), progress=False,
                           backend=RayBackend(address=ray_cluster.address, workers=2))
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert 1 <= most[0] <= 2, f"{most[0]} shards were leased at once by a driver with 2 workers"
    assert (summary.ok, summary.views, summary.failed) == (N_OK, N_OK * K, 1)
    assert not [p for p in (out / "leases").iterdir()]  # every lease given back
    assert_complete_and_clean(out, clean_store)
