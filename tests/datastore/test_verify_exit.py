"""`genview verify` exits 0 or 1, never with a native abort at interpreter exit (it did: exit 134, ~3 %)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "trainer_client"))
from tc_store_factory import build_store  # noqa: E402  (the contract-only store factory)

SCRIPT = """
import sys
from genview.datastore.verify import verify_store
report = verify_store(sys.argv[1])
sys.exit(0 if report.ok else 1)
"""


def test_verify_exit_code_is_its_verdict_on_repeated_runs(tmp_path):
    store = build_store(tmp_path / "s", shard_sizes=(3, 2), failed_in=(0,), k=2)
    runs = [subprocess.run([sys.executable, "-c", SCRIPT, store.url], capture_output=True, text=True) for _ in range(8)]
    assert [r.returncode for r in runs] == [0] * 8, [(r.returncode, r.stderr[-2000:]) for r in runs if r.returncode]
