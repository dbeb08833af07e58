"""`genview quality --workers 2`: shards measured on a local Ray instance give the in-process tables."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
from quality_consts import K_NN

pytest.importorskip("ray")

from genview.cli.main import main as cli  # noqa: E402
from genview.datastore.store import Store  # noqa: E402
from genview.quality.run import quality_done_shards  # noqa: E402


@pytest.mark.slow
def test_quality_on_local_ray_workers_matches_in_process(measured, quality_weights, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(measured[0], store)
    shutil.rmtree(store / "quality")
    code = cli(["quality", str(store), "--inception-weights", quality_weights("inception"), "--scorer", "openclip:tiny",
                "--scorer-weights", quality_weights("openclip"), "--k-nn", str(K_NN), "--fid-views", "all", "--workers", "2"])
    assert code == 0
    err = capsys.readouterr().err
    pids = {line.split(" on pid ")[1].split()[0] for line in err.splitlines() if " on pid " in line}
    assert len(pids) == 2  # both shards measured, each by its own actor process
    assert quality_done_shards(Store(str(store))) == {0, 1}
    got = sorted(pq.read_table(store / "quality" / "classes.parquet").to_pylist(), key=lambda r: str(r["label"]))
    want = sorted(measured[1].values(), key=lambda r: str(r["label"]))
    for g, w in zip(got, want):
        for name, value in w.items():
            assert g[name] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), name
