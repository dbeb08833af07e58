"""Long verbs show progress: periodic plain lines when stderr is not a terminal (logs), a bar on a terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from genview.cli.main import main as cli
from genview.console_progress import LineProgress, progress_bar


def test_plain_lines_carry_counts_rate_and_eta():
    stream = io.StringIO()
    bar = LineProgress(total=10, desc="verify", unit="shards", stream=stream, interval=0.0)
    for _ in range(4):
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("verify: 1/10 shards (10%), ") and "shards/s" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("verify: 4/10 shards (40%)") and lines[-1].endswith(" in all")
    assert isinstance(progress_bar(3, "x", stream=io.StringIO()), LineProgress)  # not a terminal: lines


def test_verify_and_pull_report_progress_to_a_log(tmp_path, image_folder, tiny_weights):
    out = tmp_path / "store"
    assert cli(["generate", str(image_folder), "--model", "icgan", "--weights", tiny_weights(), "--out", str(out),
                "--k", "1", "--shard-size", "3", "--device", "cpu", "--no-progress"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    verify = subprocess.run([sys.executable, "-m", "genview.cli.main", "verify", str(out)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
    assert "verify: 4/4 shards (100%)" in verify.stderr and verify.stdout.strip().endswith("OK")
    pull = subprocess.run([sys.executable, "-m", "genview.cli.main", "pull", str(out), "--to", str(tmp_path / "copy")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert pull.returncode == 0, pull.stderr
    assert "pull: 4/4 shards (100%)" in pull.stderr
    quiet = subprocess.run([sys.executable, "-m", "genview.cli.main", "verify", str(out), "--no-progress"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "shards/s" not in quiet.stderr
