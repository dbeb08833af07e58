"""A format-v2 store opens, with no option and no workaround, in every standard reader.

webdataset (to_tuple on the fixed member names), Ray Data (read_webdataset, read_parquet),
Hugging Face datasets (webdataset and parquet builders), duckdb, polars and pandas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from genview.pipeline import GenerateSpec, generate
from genview.synthetic_data import make_image_folder, make_messy_folder

K = 2


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_weights):
    """12 sources in 3 classes + a 4th folder of awkward ones (png, palette, alpha, EXIF, 4 failures)."""
    root = tmp_path_factory.mktemp("readers")
    make_image_folder(root / "src", classes=3, per_class=4, size=48, seed=2)
    make_messy_folder(root / "src")
    out = root / "store"
    summary = generate(
        GenerateSpec(source=str(root / "src"), out=str(out), model="icgan", weights=tiny_weights(), k=K, shard_size=10),
        progress=False,
    )
    assert summary.failed == 4
    header = json.loads((out / "genview.json").read_text())
    return out, summary, header


def test_webdataset_to_tuple_src_view_cls(store):
    import webdataset as wds

    out, summary, header = store
    pattern = str(out / header["shard_pattern"])
    rows = list(wds.WebDataset(pattern, shardshuffle=False).decode("pil").to_tuple("src.jpg", "v0.jpg", "cls", "__key__"))
    assert len(rows) == summary.ok
    for src, view, cls, _ in rows:
        assert src.mode == "RGB" and view.size[0] > 0 and cls in (0, 1, 2, 3)  # class_00..02 and messy/


def test_pandas_polars_duckdb_read_the_manifest_folder_losslessly(store):
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as pads

    out, summary, _ = store
    truth = pads.dataset(str(out / "manifest"), format="parquet").to_table()
    seeds = sorted(s for s in truth.column("seed").to_pylist() if s is not None)
    assert len(seeds) == summary.views and max(seeds) > 2**53  # seeds above float precision exist

    frame = pd.read_parquet(out / "manifest")
    assert len(frame) == truth.num_rows
    assert sorted(int(s) for s in frame["seed"].dropna()) == seeds  # no float64 round trip
    assert frame["label_index"].dropna().astype(int).between(0, 3).all()

    polars_frame = pl.scan_parquet(str(out / "manifest")).collect()  # the folder, no glob, no option
    assert polars_frame.height == truth.num_rows
    assert sorted(polars_frame["seed"].drop_nulls().to_list()) == seeds

    con = duckdb.connect()
    got = con.sql(f"SELECT seed FROM read_parquet('{out}/manifest/*.parquet') WHERE seed IS NOT NULL").fetchall()
    assert sorted(s for (s,) in got) == seeds
    sources = con.sql(f"SELECT count(*) FROM '{out}/sources.parquet'").fetchall()[0][0]
    assert sources == summary.ok + summary.failed


def test_hf_datasets_webdataset_and_parquet_builders(store, tmp_path):
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")

    out, summary, _ = store
    cache = str(tmp_path / "hf-cache")
    manifest = datasets.load_dataset("parquet", data_dir=str(out / "manifest"), split="train", cache_dir=cache)
    assert manifest.num_rows == summary.views + summary.failed
    tars = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    samples = datasets.load_dataset("webdataset", data_files={"train": tars}, split="train", cache_dir=cache)
    assert samples.num_rows == summary.ok
    assert all(image is not None and image.mode == "RGB" for image in samples["src.jpg"])
    assert all(image is not None for image in samples["v1.jpg"])
    assert sorted(set(samples["cls"])) == [0, 1, 2, 3]  # class_00..02 and messy/


RAY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ray
    ray.init(address="local", num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.2",
             logging_level="ERROR", log_to_driver=False)
    import ray.data
    store = sys.argv[1]
    header = json.load(open(store + "/genview.json"))
    shards = [store + "/shards"]
    samples = ray.data.read_webdataset(shards).take_all()
    manifest = ray.data.read_parquet(store + "/manifest")
    seeds = sorted(r["seed"] for r in manifest.take_all() if r["seed"] is not None)
    print(json.dumps({"samples": len(samples), "members": sorted(samples[0].keys()), "rows": manifest.count(),
                      "max_seed": seeds[-1]}))
    ray.shutdown()
    """
)


def test_ray_data_read_webdataset_and_read_parquet(store, tmp_path):
    pytest.importorskip("ray")
    out, summary, _ = store
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
           "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", RAY_SCRIPT, str(out)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["samples"] == summary.ok
    assert {"src.jpg", "v0.jpg", "v1.jpg", "cls", "json"} <= set(got["members"])
    assert got["rows"] == summary.views + summary.failed and got["max_seed"] > 2**53
