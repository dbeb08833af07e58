"""The Ray driver never builds a model: genview.json records the model as a worker loaded it."""

from __future__ import annotations

import pytest

from genview.datastore.store import Store
from genview.generator.icgan import ICGANGenerator
from genview.pipeline import GenerateSpec, generate, runner
from genview.pipeline.ray_backend import RayBackend


def test_driver_records_the_workers_model_without_loading_one(monkeypatch, ray_cluster, fault_job, clean_store, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("the driver built a model")

    # Only this (driver) process is patched: the actors load theirs in their own processes.
    monkeypatch.setattr(runner, "load_generator", refuse)
    monkeypatch.setattr(ICGANGenerator, "from_pretrained", classmethod(refuse))
    out = tmp_path / "store"
    backend = RayBackend(address=ray_cluster.address, workers=1)
    summary = generate(GenerateSpec(out=str(out), **fault_job[1]), progress=False, backend=backend)
    assert summary.views == 20 * 3
    recorded, clean = Store(str(out)).spec, Store(str(clean_store)).spec
    # The identity the worker described is the one an in-process run records for the same spec.
    assert recorded["params"] == clean["params"] == {"truncation": 0.8, "truncation_mode": "scaled", "dtype": "float32"}
    assert recorded["weights"]["sha256"] == clean["weights"]["sha256"]
    assert recorded["image_size"] == clean["image_size"] == 32
    assert backend._workers is None  # closed: actors killed once the job is done


def test_a_worker_that_cannot_load_its_model_is_a_clear_error(ray_cluster, fault_job, tmp_path):
    spec = GenerateSpec(out=str(tmp_path / "s"), **{**fault_job[1], "weights": str(tmp_path / "missing")})
    with pytest.raises(RuntimeError, match="could not start"):
        generate(spec, progress=False, backend=RayBackend(address=ray_cluster.address, workers=1))
