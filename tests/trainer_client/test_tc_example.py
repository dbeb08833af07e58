"""examples/simclr_minimal.py trains on a store on CPU, quickly, and its loss falls."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tc_store_factory import build_store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "simclr_minimal.py"


def test_simclr_example_runs_and_loss_falls(tmp_path):
    store = build_store(tmp_path / "store", shard_sizes=(24, 24, 24, 24), failed_in=(), marker=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), str(store.root), "--epochs", "8", "--strategy", "generative_crop"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    losses = [float(x) for x in re.findall(r"epoch \d+: loss ([0-9.]+)", result.stdout)]
    assert len(losses) == 8
    assert losses[-1] < 0.8 * losses[0], losses
    assert min(losses[-3:]) < min(losses[:2]), losses
    assert elapsed < 60, f"example took {elapsed:.1f}s"
