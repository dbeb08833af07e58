"""`genview quality` on an s3:// store (a real S3 server on 127.0.0.1): resumes per shard, same tables as on local disk."""

from __future__ import annotations

import sys
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
from quality_consts import K_NN

sys.path.insert(0, str(Path(__file__).parents[1] / "s3"))

from moto_s3 import s3_bucket, s3_server  # noqa: E402,F401  (fixtures)

from genview.datastore.store import Store  # noqa: E402
from genview.quality import tables  # noqa: E402
from genview.quality.run import QualitySpec, measure_quality, quality_done_shards  # noqa: E402
from genview.trainer_client.filters import ViewFilter, eligible_views  # noqa: E402
from genview.trainer_client.store_index import StoreIndex  # noqa: E402


def test_quality_on_s3_store_resumes_and_matches_local(measured, networks, s3_bucket):
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    # The store with the local run's results, as if that run had been killed after shard 0.
    fs.put(str(measured[0]), f"{s3_bucket}/store", recursive=True)
    for name in ("done/000001.json", "features/000001.npz", "classes.parquet", "views.parquet"):
        fs.rm(f"{s3_bucket}/store/quality/{name}")
    url = f"s3://{s3_bucket}/store"
    spec = QualitySpec(store=url, inception_weights="unused: networks given", k_nn=K_NN, fid_views="all")
    report = measure_quality(spec, networks=networks, log=lambda _: None)
    assert report.shards_run == 1 and report.shards_total == 2 and report.settings["complete"]
    store = Store(url)
    assert quality_done_shards(store) == {0, 1}
    classes = tables.read_classes(store.fs, store.root).to_pylist()
    # The same networks on the same views give the local run's figures.
    want = sorted(measured[1].values(), key=lambda r: str(r["label"]))
    for got, ref in zip(sorted(classes, key=lambda r: str(r["label"])), want):
        for name, value in ref.items():
            assert got[name] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), name
    # Rerun: nothing left to measure; the trainer client reads the tables from S3.
    assert measure_quality(spec, networks=networks, log=lambda _: None).shards_run == 0
    eligible = eligible_views(StoreIndex(url), ViewFilter(exclude="fid>=150"))
    assert len(eligible.source_ids) == 8 and eligible.mask.sum() == 8  # 4 sources x K=2 of the good class
    with fs.open(f"{s3_bucket}/store/quality/views.parquet", "rb") as fh:
        assert pq.read_table(fh).num_rows == 16
