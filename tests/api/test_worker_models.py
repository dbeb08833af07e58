"""A queued job's worker checks its model against what the service enables when the worker starts."""

from __future__ import annotations

import json
import subprocess
import sys

from genview.api import schemas
from genview.api.executors import worker_command
from genview.api.worker import EXIT_REFUSED
from genview.pipeline.spec import GenerateSpec


def test_the_worker_command_carries_the_models_enabled_now(monkeypatch):
    spec = GenerateSpec(source="imgs", out="store", model="icgan", weights="w")
    monkeypatch.setattr(schemas, "_ENABLED_MODELS", ["icgan", "toy"])
    cmd = worker_command(sys.executable, spec, [], "/base", None)
    assert [a for a in cmd if a.startswith("--enabled-model=")] == ["--enabled-model=icgan", "--enabled-model=toy"]


def test_a_worker_refuses_a_model_the_service_no_longer_enables(tmp_path, tiny_weights):
    # The job was accepted while "eldm" was enabled; the operator then enabled only icgan and toy.
    spec = GenerateSpec(source=str(tmp_path / "imgs"), out=str(tmp_path / "store"), model="eldm",
                        weights=tiny_weights("eldm"), k=1)
    status = tmp_path / "exit.json"
    done = subprocess.run([sys.executable, "-m", "genview.api.worker", "--spec-json", spec.model_dump_json(),
                           "--status-file", str(status), "--enabled-model", "icgan", "--enabled-model", "toy"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_REFUSED, done.stderr
    recorded = json.loads(status.read_text())
    assert recorded["exit_code"] == EXIT_REFUSED
    assert "model 'eldm' is not enabled on this service (enabled now: icgan, toy)" in recorded["error"]
    assert not (tmp_path / "store").exists()  # refused before anything was written
