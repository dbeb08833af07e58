"""`genview quality --workers 2`: shards measured on a local Ray instance give the in-process tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from quality_consts import K_NN

pytest.importorskip("ray")

from genview.datastore.store import Store  # noqa: E402
from genview.quality.run import quality_done_shards  # noqa: E402


@pytest.mark.slow
def test_quality_on_local_ray_workers_matches_in_process(measured, quality_weights, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(measured[0], store)
    shutil.rmtree(store / "quality")
    # Its own process: a Ray instance started and shut down inside pytest's process left state that made
    # the Ray cluster tests that run after it (tests/ray) lose their actors.
    cmd = [sys.executable, "-m", "genview.cli.main", "quality", str(store), "--inception-weights",
           quality_weights("inception"), "--scorer", "openclip:tiny", "--scorer-weights", quality_weights("openclip"),
           "--k-nn", str(K_NN), "--fid-views", "all", "--workers", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    err = done.stderr
    pids = {line.split(" on pid ")[1].split()[0] for line in err.splitlines() if " on pid " in line}
    assert len(pids) == 2  # both shards measured, each by its own actor process
    assert quality_done_shards(Store(str(store))) == {0, 1}
    got = sorted(pq.read_table(store / "quality" / "classes.parquet").to_pylist(), key=lambda r: str(r["label"]))
    want = sorted(measured[1].values(), key=lambda r: str(r["label"]))
    for g, w in zip(got, want):
        for name, value in w.items():
            assert g[name] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), name
