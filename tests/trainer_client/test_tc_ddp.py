"""A real 2-process torchrun (gloo, CPU) training run: no hang by default, exact len(loader), exactly-once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tc_store_factory import build_store

SCRIPT = Path(__file__).with_name("ddp_train_script.py")


def torchrun(store: str, out: Path, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the training script on 2 CPU processes; the repo stays importable in them."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), store, str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """41 samples in 5 uneven shards, trained on by 2 ranks x 2 DataLoader workers."""
    root = tmp_path_factory.mktemp("ddp")
    store = build_store(root / "store", shard_sizes=(9, 7, 11, 6, 8), k=2, failed_in=(1,))
    assert len(store.ok_ids) == 41
    out = root / "out"
    out.mkdir()
    result = torchrun(store.url, out)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return store, ranks


def test_default_gives_every_rank_the_same_batches(ddp_run):
    store, ranks = ddp_run
    for epoch in range(2):
        counts = [len(r["default"][epoch]["sizes"]) for r in ranks]
        # 41 samples over 2 ranks: 21 each ("pad": one sample read twice), batch 3 -> 7 batches.
        assert counts == [7, 7]
        seen = [i for r in ranks for i in r["default"][epoch]["ids"]]
        assert set(seen) == set(store.ok_ids) and len(seen) == 42


def test_len_of_loader_equals_the_batches_trained_on(ddp_run):
    _, ranks = ddp_run
    for r in ranks:
        for phase in ("default", "drop_last", "exact"):
            for epoch in r[phase]:
                assert epoch["len"] == len(epoch["sizes"]), (phase, epoch)
        # Split per sample, 2 workers x (10, 11) samples would give 4 + 4 = 8 batches (len 7), and
        # with drop_last 3 + 3 = 6 full batches: 3 of 21 samples dropped instead of none.
        assert r["drop_last"][0]["sizes"] == [3] * 7


def test_exactly_once_option_reads_every_sample_once(ddp_run):
    store, ranks = ddp_run
    seen = Counter(i for r in ranks for i in r["exact"][0]["ids"])
    assert seen == Counter(store.ok_ids)
    # 20 and 21 samples in batches of 4: 5 and 6 batches, the uneven case Join handles.
    assert sorted(len(r["exact"][0]["sizes"]) for r in ranks) == [5, 6]


def test_a_hang_fails_fast_instead_of_passing(tmp_path):
    # The control: exactly-once without Join leaves rank 0 waiting in an all-reduce rank 1 never
    # joins. The short gloo timeout turns that hang into a failure within seconds.
    store = build_store(tmp_path / "store", shard_sizes=(9, 7, 11, 6, 8), k=2, failed_in=(1,))
    out = tmp_path / "out"
    out.mkdir()
    result = torchrun(store.url, out, "--no-join", "--timeout", "5", timeout=120)
    assert result.returncode != 0
    assert "Timed out" in result.stderr or "timed out" in result.stderr.lower()
