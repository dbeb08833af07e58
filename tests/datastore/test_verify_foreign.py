"""`genview verify` names files another tool left in manifest/, stats/ or shards/ (exit 1), and accepts genview's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parents[1] / "trainer_client"))
from tc_store_factory import build_store  # noqa: E402  (the contract-only store factory)

REPO = Path(__file__).resolve().parents[2]


def verify(store: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "genview.cli.main", "verify", str(store)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_verify_names_foreign_files_and_accepts_its_own(tmp_path):
    store = build_store(tmp_path / "s", shard_sizes=(3, 2), failed_in=(0,), k=2)
    # genview's own per-shard files in stats/ (summaries, member indexes) are not foreign.
    (store.root / "stats" / "000000.summary.json").write_text("{}")
    (store.root / "stats" / "000001.index.parquet").write_bytes(b"")
    clean = verify(store.root)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert pd.read_parquet(store.root / "manifest").shape[0] > 0

    (store.root / "manifest" / "index.json").write_text('{"files": []}')  # the case
    (store.root / "stats" / "notes.txt").write_text("x")
    (store.root / "shards" / "000000.tar.idx").write_bytes(b"\0")
    result = verify(store.root)
    assert result.returncode == 1
    for name in ("manifest/index.json", "stats/notes.txt", "shards/000000.tar.idx"):
        assert f"foreign file {name}" in result.stdout + result.stderr
