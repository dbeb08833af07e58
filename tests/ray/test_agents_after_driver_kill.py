"""Issue 19: a driver that started its own Ray instance (`--workers N`, no cluster) and was SIGKILLed leaves
Ray's DashboardAgent and RuntimeEnvAgent behind for a minute (they wait 60 s to report the raylet's death
to a GCS that died with it). The service sweeps its dead worker's process group; for a driver started by
hand, docs/security.md gives the command, and this test runs that exact command."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from local_cluster import env_for_cli

AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
#: The command docs/security.md gives (PGID: the killed driver's process group, its pid for a shell job).
DOCUMENTED_COMMAND = "pkill -KILL -g {pgid}"


def agents_in_group(pgid: int) -> list[psutil.Process]:
    """Ray agent processes in process group `pgid`."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            title = " ".join(proc.info["cmdline"] or []) or proc.info["name"] or ""
            if title.startswith(AGENTS) and os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module")
def small_job(tmp_path_factory, tiny_weights):
    """A job of 20 sources in 2-source shards: long enough to be killed while it runs."""
    from genview.synthetic_data import make_image_folder

    root = tmp_path_factory.mktemp("agents")
    make_image_folder(root / "src", classes=2, per_class=10, size=48, seed=5)
    return root, ["--model", "icgan", "--weights", tiny_weights(), "--k", "8", "--shard-size", "2", "--view-size", "64",
                  "--device", "cpu", "--workers", "1", "--io-threads", "1", "--no-progress"]


def _wait_for_agents(pgid: int, alive, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while len(agents_in_group(pgid)) < len(AGENTS):
        assert alive(), "the driver ended before Ray's agents started"
        assert time.monotonic() < deadline, "Ray's agents never started"
        time.sleep(0.2)


def _gone_within(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while agents_in_group(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_the_documented_command_removes_the_agents_of_a_killed_driver(small_job):
    root, args = small_job
    driver = subprocess.Popen([sys.executable, "-m", "genview.cli.main", "generate", str(root / "src"), *args,
                               "--out", str(root / "by-hand")], env=env_for_cli(), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_agents(driver.pid, lambda: driver.poll() is None)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        time.sleep(2)
        assert agents_in_group(driver.pid), "the agents died with the driver: nothing to clean up any more"
        result = subprocess.run(DOCUMENTED_COMMAND.format(pgid=driver.pid), shell=True, timeout=30)
        assert result.returncode == 0
        assert _gone_within(driver.pid, 5), "the documented command left Ray's agents running"
    finally:
        subprocess.run(["pkill", "-KILL", "-g", str(driver.pid)], check=False)


@dataclasses.dataclass
class _Job:
    id: str
    pid: int | None = None
    pid_start_time: float | None = None
    external_id: str | None = None
    job_dir: str | None = None


def test_the_service_sweeps_what_a_killed_worker_left(small_job, tmp_path):
    """The local executor's worker (a `genview generate --workers 1` in its own session) is SIGKILLed:
    the poll that finds it dead also kills the Ray agents it left, at once instead of a minute later."""
    from genview.api.executors import LocalProcessExecutor
    from genview.api.paths import canonical_root
    from genview.pipeline.spec import GenerateSpec

    root, args = small_job
    executor = LocalProcessExecutor(str(tmp_path / "jobs"), str(root), sys.executable, env=env_for_cli())
    spec = GenerateSpec(source=str(root / "src"), out=str(root / "by-service"), model="icgan", weights=args[3], k=8,
                        shard_size=2, view_size=64, device="cpu", workers=1, io_threads=1)
    roots = [canonical_root(str(root), str(root)), canonical_root(args[3], str(root))]
    info = executor.start("job-agents", spec, roots[:1], roots)
    job = _Job("job-agents", info.pid, info.pid_start_time, None, info.job_dir)
    try:
        _wait_for_agents(info.pid, lambda: executor.poll(job).running)
        os.kill(info.pid, signal.SIGKILL)  # the worker alone, as the OOM killer would
        deadline = time.monotonic() + 30
        while executor.poll(job).running:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        started = time.monotonic()
        assert _gone_within(info.pid, 5), "Ray's agents outlived the worker the service found dead"
        print(f"agents gone {time.monotonic() - started:.2f} s after the service saw the worker dead")
    finally:
        subprocess.run(["pkill", "-KILL", "-g", str(info.pid)], check=False)
