"""The service's parts without a server: path policy, settings, worker command, progress, executors, client."""

from __future__ import annotations

import datetime as dt
import json
import os

import httpx
import pytest

from genview.api.paths import PathInvalid, PathRefused, canonical_root, resolve
from genview.api.progress import summarize
from genview.api.settings import load_settings
from genview.pipeline.spec import GenerateSpec


@pytest.fixture()
def roots(tmp_path):
    base = tmp_path / "base"
    (base / "data" / "imgs").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, base / "data" / "escape")
    os.symlink(base / "data" / "imgs", base / "data" / "alias")
    return {
        "base": str(base),
        "outside": str(outside),
        "roots": [canonical_root("data", str(base)), canonical_root("s3://bucket/team", str(base))],
    }


def check(value, roots):
    return resolve(value, field="source", roots=roots["roots"], base_dir=roots["base"], what="source")


def test_paths_inside_the_roots_resolve_to_real_absolute_paths(roots):
    real = os.path.realpath(os.path.join(roots["base"], "data", "imgs"))
    assert check("data/imgs", roots) == real
    assert check(real, roots) == real
    assert check("file://" + real, roots) == real
    assert check("data/alias", roots) == real  # a symlink that stays inside is fine
    assert check("s3://bucket/team/images", roots) == "s3://bucket/team/images"
    assert check("S3://bucket/team", roots) == "s3://bucket/team"


@pytest.mark.parametrize(
    "value, error, fragment",
    [
        ("data/../data/imgs", PathRefused, "'..' is not allowed"),
        ("/etc/passwd", PathRefused, "outside your source roots"),
        ("data/escape/x", PathRefused, "leads through a symbolic link"),
        ("~/data", PathRefused, "outside your source roots"),
        ("s3://bucket/team-other/x", PathRefused, "outside your source roots"),
        ("s3://bucket/team/%2e%2e/secret", PathRefused, "'..' and '.' segments"),
        ("s3://bucket/team/../secret", PathRefused, "'..' and '.' segments"),
        ("gs://bucket/team/x", PathRefused, "allowed URL roots: s3://bucket/team"),
        ("https://bucket/team/x", PathRefused, "https:// URL"),
        ("zip::s3://bucket/team/x.zip", PathRefused, "chained fsspec URLs"),
        ("", PathInvalid, "must not be empty"),
        ("data/\x00x", PathInvalid, "control characters"),
        ("3x://host/y", PathInvalid, "malformed URL"),
        ("s3://", PathInvalid, "malformed URL"),
        ("file://relative/path", PathInvalid, "absolute path"),
    ],
)
def test_paths_outside_the_roots_are_refused(roots, value, error, fragment):
    with pytest.raises(error) as info:
        check(value, roots)
    assert info.value.field == "source"
    assert fragment in str(info.value)


def test_settings_from_env_and_toml_file(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("GENVIEW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GENVIEW_TOKENS", "tok-one, tok-two")
    monkeypatch.setenv("GENVIEW_OUTPUT_ROOTS", "stores,s3://b/p")
    settings = load_settings(base_dir=str(tmp_path))
    assert set(settings.tokens) == {"tok-one", "tok-two"}
    principal = settings.authenticate("tok-two")
    assert principal.source_roots == [str(tmp_path.resolve())]
    assert principal.output_roots == [str(tmp_path.resolve() / "stores"), "s3://b/p"]
    assert settings.authenticate("tok-three") is None and settings.authenticate("") is None
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'genview-jobs.sqlite'}"

    file = tmp_path / "genview.toml"
    file.write_text('max_running_jobs = 3\nport = 9000\n[tokens.secret]\nname = "carol"\nmax_jobs_in_flight = 7\n')
    monkeypatch.delenv("GENVIEW_TOKENS")
    monkeypatch.setenv("GENVIEW_PORT", "9100")  # the environment beats the file
    settings = load_settings(settings_file=str(file), base_dir=str(tmp_path))
    assert settings.port == 9100 and settings.max_running_jobs == 3
    carol = settings.authenticate("secret")
    assert carol.name == "carol" and carol.max_jobs_in_flight == 7
    file.write_text("max_runing_jobs = 3\n")
    with pytest.raises(Exception, match="max_runing_jobs"):
        load_settings(settings_file=str(file))
    with pytest.raises(FileNotFoundError, match="GENVIEW_SETTINGS_FILE"):
        load_settings(settings_file=str(tmp_path / "missing.toml"))


def test_serve_refuses_unsafe_auth_settings(tmp_path):
    from genview.api.server import check_security

    with pytest.raises(ValueError, match="no API tokens configured"):
        check_security(load_settings(base_dir=str(tmp_path), tokens={}))
    with pytest.raises(ValueError, match="local use only"):
        check_security(load_settings(base_dir=str(tmp_path), auth_disabled=True, host="0.0.0.0"))
    check_security(load_settings(base_dir=str(tmp_path), auth_disabled=True, host="127.0.0.1"))
    check_security(load_settings(base_dir=str(tmp_path), tokens="a-token"))


def test_worker_argv_round_trips_through_the_generate_parser():
    from genview.api.worker import spec_to_argv
    from genview.cli.api_commands import spec_from_generate_args

    spec = GenerateSpec(source="/data/imgs", out="/data/out", model="icgan", weights="/w", k=3, seed=7,
                        shard_size=11, batch_size=5, view_size=64, format="webp", quality=80, best_of=2,
                        params={"truncation": 0.7, "encoder_weights": "/w/a b.pth", "compile": True, "truncation_mode": "truncated"},
                        io_threads=2, device="cpu",
                        interpolate=True, alphas=[0.2, 0.4], interpolation="lerp")
    argv = spec_to_argv(spec)
    assert argv[:2] == ["generate", "/data/imgs"] and "--no-progress" in argv
    assert GenerateSpec(**spec_from_generate_args(argv[1:])) == spec


def test_progress_rate_and_eta_come_from_this_jobs_done_markers():
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    t0 = start.timestamp()
    stats = {
        0: ({"sources": 10, "views": 40, "failed": 0, "seconds": 5}, t0 - 100),  # an earlier run
        1: ({"sources": 10, "views": 38, "failed": 1, "seconds": 5}, t0 + 20),
        2: ({"sources": 10, "views": 40, "failed": 0, "seconds": 5}, t0 + 25),
        3: ({"sources": 10, "views": 40, "failed": 0, "seconds": 5}, t0 + 30),
    }
    progress = summarize(stats, sources_total=100, shards_total=10, started_at=start, now=t0 + 31)
    assert progress["sources_done"] == 40 and progress["views_written"] == 158 and progress["failed_sources"] == 1
    assert progress["shards_done"] == 4 and progress["fraction"] == 0.4
    assert progress["views_per_second"] == pytest.approx(8.0)  # 80 views between the first and last marker
    assert progress["eta_seconds"] == pytest.approx(60 / 2.0)
    assert summarize({}, None, None, None)["eta_seconds"] is None


def test_a_list_file_reaching_outside_the_read_roots_is_caught(tmp_path):
    from genview.api.worker import check_listing
    from genview.synthetic_data import make_image_folder

    inside = make_image_folder(tmp_path / "root" / "imgs", classes=1, per_class=1, size=32)
    outside = make_image_folder(tmp_path / "elsewhere", classes=1, per_class=1, size=32)
    listing = tmp_path / "root" / "list.txt"
    listing.write_text(f"imgs/{inside[0].relative_to(tmp_path / 'root' / 'imgs')}\n{outside[0]}\n")
    spec = GenerateSpec(source=str(listing), out=str(tmp_path / "root" / "out"), model="icgan", weights="w")
    roots = [str((tmp_path / "root").resolve())]
    reason = check_listing(spec, roots, str(tmp_path / "root"))
    assert reason is not None and str(outside[0]) in reason and "you may not read" in reason
    listing.write_text(f"{inside[0]}\n")
    assert check_listing(spec, roots, str(tmp_path / "root")) is None


class FakeRayJobs:
    """Stands in for ray.job_submission.JobSubmissionClient."""

    def __init__(self):
        self.submitted = {}
        self.status = {}
        self.stopped = []

    def submit_job(self, *, entrypoint, submission_id, runtime_env, metadata):
        self.submitted[submission_id] = (entrypoint, runtime_env, metadata)
        self.status[submission_id] = "RUNNING"
        return submission_id

    def get_job_status(self, submission_id):
        return self.status[submission_id]

    def get_job_info(self, submission_id):
        return type("Info", (), {"message": "driver failed", "driver_exit_code": 2})()

    def stop_job(self, submission_id):
        self.stopped.append(submission_id)
        self.status[submission_id] = "STOPPED"

    def get_job_logs(self, submission_id):
        return "line 1\nline 2\ngenview generate: error: boom\n"


def test_ray_jobs_executor_submits_the_worker_and_maps_states():
    from genview.api.executors import RayJobsExecutor

    fake = FakeRayJobs()
    executor = RayJobsExecutor("http://head:8265", "/srv", runtime_env={"pip": ["genview"]},
                               generate_args=["--ray-address", "auto"], client=fake)
    spec = GenerateSpec(source="s3://b/imgs", out="s3://b/out", model="icgan", weights="/models/icgan")
    info = executor.start("job-1", spec, ["s3://b"])
    assert info.external_id == "genview-job-1"
    entrypoint, runtime_env, metadata = fake.submitted["genview-job-1"]
    assert entrypoint.startswith("python -m genview.api.worker --spec-json ")
    assert "--read-root=s3://b" in entrypoint and "--generate-arg=--ray-address --generate-arg=auto" in entrypoint
    assert runtime_env == {"pip": ["genview"]} and metadata == {"genview_job_id": "job-1"}
    job = type("Job", (), {"id": "job-1", "pid": None, "pid_start_time": None, "external_id": "genview-job-1", "job_dir": None})()
    assert executor.poll(job).running
    fake.status["genview-job-1"] = "FAILED"
    failed = executor.poll(job)
    assert not failed.running and failed.exit_code == 2 and failed.error == "driver failed"
    fake.status["genview-job-1"] = "SUCCEEDED"
    assert executor.poll(job).exit_code == 0
    fake.status["genview-job-1"] = "RUNNING"
    executor.cancel(job, grace=1)
    assert fake.stopped == ["genview-job-1"] and not executor.poll(job).running
    assert executor.logs(job, 1) == "genview generate: error: boom\n"


RAY_SCRIPT = r"""
import json, socket, sys, time
import ray
from genview.api.executors import RayJobsExecutor
from genview.pipeline.spec import GenerateSpec

base, weights, address = sys.argv[1], sys.argv[2], sys.argv[3]
if not address:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Loopback node IP (see genview.pipeline.ray_backend.LOCAL_NODE_IP): Ray swaps a literal 127.0.0.1.
    ray.init(num_cpus=1, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
             log_to_driver=False, _node_ip_address="127.0.0.2")
    address = f"http://127.0.0.1:{port}"
executor = RayJobsExecutor(address, base, python=sys.executable)


class Job:
    id, pid, pid_start_time, job_dir = "ray-test", None, None, None


def start(name, **spec):
    job = Job()
    job.external_id = executor.start(f"{name}-{time.time_ns()}", GenerateSpec(model="icgan", weights=weights, device="cpu", **spec), [base]).external_id
    return job


def wait(job):
    while (status := executor.poll(job)).running:
        time.sleep(0.5)
    return status


results = {}
bad = wait(start("bad", source=base + "/no-such-folder", out=base + "/ray-bad"))
results["bad"] = [bad.exit_code, bad.error]
good = start("good", source=base + "/imgs", out=base + "/ray-good", k=1, shard_size=12)
results["good"] = [wait(good).exit_code, executor.logs(good, 5)]
slow = start("slow", source=base + "/imgs", out=base + "/ray-slow", k=4, shard_size=1, best_of=16)
time.sleep(2)
executor.cancel(slow, grace=30)
stopped = wait(slow)
results["stopped"] = [stopped.exit_code, stopped.error]
print(json.dumps(results))
"""


@pytest.mark.slow
def test_ray_jobs_executor_against_a_real_cluster(tmp_path, tiny_weights):
    """Real Ray Jobs API: a local Ray with its dashboard (or $GENVIEW_TEST_RAY_ADDRESS), in a subprocess."""
    pytest.importorskip("ray.job_submission")
    pytest.importorskip("ray.dashboard")
    pytest.importorskip("aiohttp")  # the dashboard (job server) needs ray[default]
    import subprocess
    import sys

    from genview.synthetic_data import make_image_folder

    make_image_folder(tmp_path / "imgs", classes=3, per_class=4, size=32, seed=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([sys.executable, "-c", RAY_SCRIPT, str(tmp_path), tiny_weights("icgan"),
                           os.environ.get("GENVIEW_TEST_RAY_ADDRESS", "")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["bad"][0] == 2 and "does not exist" in results["bad"][1], results
    assert results["good"][0] == 0 and "12 sources -> 12 views" in results["good"][1]
    assert results["stopped"][0] != 0 and "stopped" in results["stopped"][1].lower()
    from genview.datastore.verify import verify_store

    assert verify_store(str(tmp_path / "ray-good")).ok


def test_client_raises_errors_carrying_the_servers_detail():
    from genview.api.client import ConflictError, GenViewClient, SpecError

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t0k"
        if request.url.path == "/v1/jobs" and request.method == "POST":
            assert request.headers["idempotency-key"] == "key-1"
            assert json.loads(request.content)["id"] == "my-id"
            return httpx.Response(422, json={"detail": [{"loc": ["body", "k"], "msg": "Input should be greater than or equal to 1"}]})
        return httpx.Response(409, json={"detail": "job x already succeeded"})

    client = GenViewClient("http://svc", token="t0k", transport=httpx.MockTransport(handler))
    with pytest.raises(SpecError, match=r"422: k: Input should be greater than or equal to 1") as info:
        client.submit({"source": "a", "model": "icgan", "weights": "w", "k": 0}, job_id="my-id", idempotency_key="key-1")
    assert info.value.status_code == 422
    with pytest.raises(ConflictError, match="already succeeded"):
        client.cancel("x")


def test_auth_can_be_disabled_explicitly_for_local_use(tmp_path):
    from fastapi.testclient import TestClient

    from genview.api.app import create_app

    settings = load_settings(base_dir=str(tmp_path), auth_disabled=True, reconcile_interval=60)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/models").status_code == 200
        assert client.get("/v1/jobs").json()["total"] == 0
    secured = load_settings(base_dir=str(tmp_path), tokens="tok-x", reconcile_interval=60)
    with TestClient(create_app(secured)) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer tok-x"}).status_code == 200


def test_service_verbs_have_help(capsys):
    from genview.cli.main import main

    for verb in ("serve", "submit", "jobs", "status", "cancel", "logs"):
        with pytest.raises(SystemExit) as info:
            main([verb, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: genview {verb}" in out
        assert ("GENVIEW_TOKENS" if verb == "serve" else "--server") in out


def test_the_web_process_does_not_import_torch():
    """The service validates specs and lists models but never runs one: importing it must not load torch."""
    import subprocess
    import sys

    code = "import sys, genview.api.app; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_status_cache_never_keeps_a_reply_older_than_a_change():
    import time

    from genview.api.status_cache import StatusCache

    cache = StatusCache(max_age=5.0)
    read_at = time.monotonic()
    cache.forget("alice", "j1")  # the job changed after the reply below was read from the database
    cache.put("alice", "j1", b"stale", read_at)
    assert cache.get("alice", "j1") is None
    cache.put("alice", "j1", b"fresh", time.monotonic())
    assert cache.get("alice", "j1") == b"fresh"
    assert cache.get("bob", "j1") is None  # replies are per owner
    cache.put("alice", "j1", b"older", read_at)  # an older reading never replaces a newer one
    assert cache.get("alice", "j1") == b"fresh"
    expired = StatusCache(max_age=0.05)
    expired.put("alice", "j2", b"x", time.monotonic())
    time.sleep(0.1)
    assert expired.get("alice", "j2") is None
    assert StatusCache(max_age=0).get("alice", "j1") is None
