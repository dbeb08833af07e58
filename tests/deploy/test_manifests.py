"""deploy/: the Ray cluster-launcher YAML against Ray's own schema, the KubeRay manifests' structure, the Dockerfile."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

from genview.cli.main import build_parser  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def ray_schema() -> dict:
    """The cluster-config schema shipped inside the ray package (what `ray up` validates with)."""
    ray = pytest.importorskip("ray")
    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def genview_argv(command: str) -> list[str]:
    """Parse a `genview generate ...` command line with genview's own CLI parser (flags must exist)."""
    argv = shlex.split(command)
    assert argv[:2] == ["genview", "generate"], command
    args = build_parser().parse_args(argv[1:])
    assert args.verb == "generate"
    return argv


def test_cluster_launcher_yaml_is_valid_for_ray():
    config = load("cluster.yaml")
    jsonschema.validate(config, ray_schema())
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and "GPU" not in head["resources"]  # the driver only
    instances = {t["node_config"]["InstanceType"] for name, t in types.items() if name != config["head_node_type"]}
    assert {"p4d.24xlarge", "p5.48xlarge"} <= instances  # A100 and H100 worker types
    assert any(t.get("min_workers", 0) >= 1 for name, t in types.items() if name != config["head_node_type"])
    assert any("pip install" in c and "genview[ray" in c for c in config["setup_commands"])


def test_cluster_launcher_yaml_passes_rays_own_config_checks():
    """What `ray up` does before launching: merge the provider defaults, then validate."""
    util = pytest.importorskip("ray.autoscaler._private.util")
    config = util.prepare_config(load("cluster.yaml"))
    util.validate_config(config)
    assert config["available_node_types"]["head"]["max_workers"] == 0


def test_ray_schema_rejects_what_it_should():
    """The schema check has teeth: a node type without resources is refused."""
    config = load("cluster.yaml")
    del config["available_node_types"]["a100"]["resources"]
    with pytest.raises(jsonschema.ValidationError, match="resources"):
        jsonschema.validate(config, ray_schema())


def check_cluster_spec(spec: dict) -> None:
    """Structure KubeRay needs: a head group, GPU worker groups, string rayStartParams, one image."""
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert all(isinstance(v, str) for group in [head, *spec["workerGroupSpecs"]] for v in group["rayStartParams"].values())
    images = set()
    head_containers = head["template"]["spec"]["containers"]
    assert head_containers[0]["name"] == "ray-head"
    assert {p["containerPort"] for p in head_containers[0]["ports"]} >= {6379, 8265, 10001}
    images.update(c["image"] for c in head_containers)
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        for container in group["template"]["spec"]["containers"]:
            images.add(container["image"])
            limits = container["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1, "worker pods must ask for a GPU"
            assert container["resources"]["requests"]["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
            assert any(m["mountPath"] == "/ckpt" for m in container["volumeMounts"])
    assert len(images) == 1, f"head and workers must run the same image, got {images}"


def test_kuberay_raycluster():
    doc = load("kuberay/raycluster.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")
    assert doc["metadata"]["name"]
    check_cluster_spec(doc["spec"])


def test_kuberay_rayjob_runs_genview_generate_on_the_cluster():
    doc = load("kuberay/rayjob.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    spec = doc["spec"]
    check_cluster_spec(spec["rayClusterSpec"])
    argv = genview_argv(spec["entrypoint"])
    assert argv[argv.index("--ray-address") + 1] == "auto"
    workers = int(argv[argv.index("--workers") + 1])
    gpus = sum(g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
               for g in spec["rayClusterSpec"]["workerGroupSpecs"])
    assert workers == gpus, "one genview actor per GPU"
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] >= 1  # retries resume
    assert spec["rayClusterSpec"]["rayVersion"] == load("kuberay/raycluster.yaml")["spec"]["rayVersion"]


def commands_in(lines: list[str]) -> list[str]:
    """`genview generate` commands in shell lines (comment marks stripped, `\\` continuations joined)."""
    joined, current = [], ""
    for line in lines:
        line = line.strip().lstrip("#").strip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    commands = []
    for line in joined:
        if "genview generate " in line:
            command = line[line.index("genview generate "):]
            commands.append(command.split('"', 1)[0])  # the end of a quoted command (ray exec "...")
    return commands


def test_commands_in_the_deploy_docs_parse():
    """The genview commands in cluster.yaml and in the code blocks of docs/cluster.md are real invocations."""
    page = (DEPLOY.parent / "docs" / "cluster.md").read_text().split("```")
    code_lines = [line for block in page[1::2] for line in block.splitlines()]
    commands = commands_in((DEPLOY / "cluster.yaml").read_text().splitlines()) + commands_in(code_lines)
    assert len(commands) >= 3
    for command in commands:
        genview_argv(command)


def test_dockerfile_is_cuda_python311_with_genview_ray():
    text = (DEPLOY / "Dockerfile").read_text()
    base = next(line for line in text.splitlines() if line.startswith("FROM "))
    assert base.startswith("FROM nvidia/cuda:") and "runtime" in base
    assert "python3.11" in text
    assert '[ray' in text and "pip install" in text
