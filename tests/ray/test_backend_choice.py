"""Which backend a job runs on: in-process by default, Ray with --ray-address / $GENVIEW_RAY_ADDRESS / --workers."""

from __future__ import annotations

import pytest

from genview.cli.main import build_parser
from genview.pipeline.backends import InProcessBackend
from genview.pipeline.ray_backend import RayBackend
from genview.pipeline.runner import RAY_ADDRESS_ENV, make_backend, uses_ray
from genview.pipeline.spec import IDENTITY_FIELDS, GenerateSpec


def spec(**kw) -> GenerateSpec:
    return GenerateSpec(source="src", out="out", model="icgan", **kw)


def test_in_process_is_the_default(monkeypatch):
    monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    assert not uses_ray(spec())
    assert isinstance(make_backend(spec(), generator=object()), InProcessBackend)


@pytest.mark.parametrize(
    ("kw", "env", "address", "workers"),
    [
        ({"ray_address": "auto"}, None, "auto", None),
        ({"ray_address": "10.0.0.1:6379", "workers": 8}, None, "10.0.0.1:6379", 8),
        ({}, "ray://head:10001", "ray://head:10001", None),
        ({"ray_address": "auto"}, "ray://ignored:10001", "auto", None),  # the flag wins over the env var
        ({"workers": 2}, None, None, 2),  # a local Ray instance with 2 worker processes
    ],
)
def test_ray_is_chosen_by_address_env_or_workers(monkeypatch, kw, env, address, workers):
    if env is None:
        monkeypatch.delenv(RAY_ADDRESS_ENV, raising=False)
    else:
        monkeypatch.setenv(RAY_ADDRESS_ENV, env)
    backend = make_backend(spec(**kw), generator=object())
    assert isinstance(backend, RayBackend)
    assert (backend.address, backend.workers) == (address, workers)


def test_where_a_job_runs_is_not_part_of_the_store_identity():
    assert "ray_address" not in IDENTITY_FIELDS and "workers" not in IDENTITY_FIELDS


def test_ray_backend_needs_an_address_or_workers():
    with pytest.raises(ValueError, match="--ray-address.*--workers"):
        RayBackend()
    with pytest.raises(ValueError, match="--workers must be at least 1"):
        RayBackend(workers=0)


def test_cli_flags_reach_the_spec():
    args = build_parser().parse_args(["generate", "src", "--model", "icgan", "--ray-address", "auto", "--workers", "3"])
    assert (args.ray_address, args.workers) == ("auto", 3)
    help_text = build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    assert "--ray-address" in help_text and "--workers" in help_text and "GENVIEW_RAY_ADDRESS" in help_text


def test_local_gpu_workers_without_gpus_fail_clearly(monkeypatch):
    """Ray started for the job on a machine without GPUs: asking for GPU workers is an error, not a hang."""
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    backend = RayBackend(workers=2)
    with pytest.raises(ValueError, match="--workers 2 with --device cuda needs 2 GPU"):
        backend._actor_options(spec(device="cuda", workers=2), local=True)
    count, options = backend._actor_options(spec(device="auto", workers=2), local=True)
    assert (count, options["num_gpus"], options["num_cpus"]) == (2, 0, 1.0)
    assert options["max_restarts"] == -1 and options["max_task_retries"] == 0


def test_gpu_cluster_gets_one_actor_per_gpu(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 192.0, "GPU": 16.0})
    count, options = RayBackend(address="auto")._actor_options(spec(io_threads=6), local=False)
    assert (count, options["num_gpus"], options["num_cpus"]) == (16, 1, 6.0)
    # An autoscaling cluster may have no GPU yet: --device cuda --workers N still asks for N GPU actors.
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    count, options = RayBackend(address="auto", workers=8)._actor_options(spec(device="cuda"), local=False)
    assert (count, options["num_gpus"]) == (8, 1)
