"""Live progress on Ray: the driver writes what the actor streams from inside a running shard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray")


@pytest.mark.slow  # starts a local Ray instance (~20 s on a quiet machine)
def test_ray_worker_progress_reaches_the_live_file_before_the_shard_commits(tmp_path, tiny_weights):
    from genview.datastore import layout
    from genview.synthetic_data import make_image_folder

    make_image_folder(tmp_path / "imgs", classes=2, per_class=20, size=48, seed=4)
    out = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "GENVIEW_RAY_ADDRESS")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "genview.cli.main", "generate", str(tmp_path / "imgs"), "--model", "icgan",
           "--weights", tiny_weights("icgan"), "--k", "8", "--shard-size", "40", "--batch-size", "4", "--device", "cpu",
           "--workers", "1", "--live-progress", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    live, marker = out / layout.LIVE_PROGRESS_FILE, out / layout.STATS_DIR / "000000.json"
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                running = json.loads(live.read_text())["running_shards"].get("0")
            except (OSError, ValueError):
                running = None
            if running and not marker.exists() and 0 < running[0] < 40:
                seen.append(running[0])
            time.sleep(0.1)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert len(set(seen)) >= 2 and seen[-1] > seen[0], f"in-shard counts seen from the Ray worker: {seen}"
    assert "40 sources -> 320 views" in stdout
    assert not live.exists()  # removed at the end: the done markers say everything then
