"""A real local multi-node Ray cluster (head + 2 worker nodes on 127.0.0.1), started once per module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

sys.path.insert(0, str(Path(__file__).parent))  # local_cluster.py beside this file
sys.path.insert(0, str(Path(__file__).parent.parent / "s3"))  # the S3 server fixtures

from local_cluster import LocalCluster  # noqa: E402
from moto_s3 import s3_bucket, s3_server  # noqa: E402,F401  (fixtures)


@pytest.fixture(scope="module")
def ray_cluster():
    """Head (no CPUs: only the driver connects there) + 2 worker nodes with 1 CPU each; always stopped."""
    # One torch thread per actor, and nothing reaches a model hub.
    cluster = LocalCluster(cpus=1, env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    try:
        cluster.start(worker_nodes=2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
def _no_ray_left_connected():
    """Every test leaves this process disconnected from Ray (the backend shuts down what it started)."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="session")
def fault_job(tmp_path_factory, tiny_weights):
    """A job whose shards take a second or two each (best-of-4, 256 px PNG views): kills land mid-shard.

    Returns (CLI arguments without --out, GenerateSpec keyword arguments, number of sources).
    """
    root = tmp_path_factory.mktemp("faultjob")
    from genview.synthetic_data import make_image_folder

    make_image_folder(root / "src", classes=2, per_class=10, size=64, seed=11)  # 20 sources
    (root / "src" / "class_01" / "zz_broken.jpg").write_bytes(b"not an image")  # a failed source: data, not a crash
    spec = dict(source=str(root / "src"), model="icgan", weights=tiny_weights(), k=3, shard_size=3, batch_size=6,
                best_of=4, view_size=256, format="png", device="cpu", io_threads=2)
    args = [spec["source"], "--model", "icgan", "--weights", spec["weights"], "--k", "3", "--shard-size", "3",
            "--batch-size", "6", "--best-of", "4", "--view-size", "256", "--format", "png", "--device", "cpu",
            "--io-threads", "2", "--no-progress"]
    return args, spec, 21


@pytest.fixture(scope="session")
def clean_store(tmp_path_factory, fault_job):
    """The fault job run cleanly in this process: the bytes every faulty run must reproduce."""
    from genview.pipeline import GenerateSpec, generate

    out = tmp_path_factory.mktemp("clean") / "store"
    generate(GenerateSpec(out=str(out), **fault_job[1]), progress=False)
    return out
