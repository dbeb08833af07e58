"""The job service over real HTTP: submit -> succeeded, cancel + resume, restart mid-job, auth, paths, limits."""

from __future__ import annotations

import json
import os

import psutil
import pytest

from genview.datastore.verify import verify_store

from .conftest import TOKENS, LiveServer, wait_for


def job_body(api_base, source="imgs", out=None, **overrides):
    body = {"source": source, "model": "icgan", "weights": api_base["weights"], "k": 2, "shard_size": 5,
            "view_size": 16, "io_threads": 1, "device": "cpu"}
    if out is not None:
        body["out"] = out
    body.update(overrides)
    return body


def done_markers(store) -> dict[str, int]:
    """Done-marker file name -> mtime_ns, to tell kept shards from remade ones (format v2: stats/NNNNNN.json)."""
    stats = store / "stats"
    if not stats.exists():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in stats.glob("[0-9]*.json")}


def test_submit_runs_to_success_with_a_valid_store(server, alice, api_base, capsys):
    response = alice.post("/v1/jobs", json=job_body(api_base, out="stores/ok"))
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["state"] in ("queued", "running")
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["spec"]["out"] == str(api_base["base"] / "stores" / "ok")  # resolved against the service folder
    job = wait_for(alice, job["id"])
    assert job["state"] == "succeeded", job
    progress = job["progress"]
    assert progress["sources_total"] == 12 and progress["sources_done"] == 12
    assert progress["shards_total"] == 3 and progress["shards_done"] == 3
    assert progress["views_written"] == 24 and progress["failed_sources"] == 0
    assert progress["fraction"] == 1.0 and progress["eta_seconds"] == 0.0
    assert progress["views_per_second"] > 0
    assert job["execution"]["exit_code"] == 0 and job["error"] is None
    report = verify_store(job["spec"]["out"], decode=True)
    assert report.ok, str(report)
    assert "RANDOMLY INITIALISED" in alice.get(f"/v1/jobs/{job['id']}/logs", params={"tail": 50}).text

    listed = alice.get("/v1/jobs", params={"state": "succeeded", "limit": 1}).json()
    assert listed["items"][0]["state"] == "succeeded" and listed["limit"] == 1
    assert listed["total"] >= 1
    # The CLI verbs use genview.api.client against the same server.
    from genview.cli.main import main

    common = ["--server", server.url, "--token", TOKENS["alice"]]
    assert main(["status", job["id"], *common]) == 0
    out = capsys.readouterr().out
    assert "succeeded" in out and "12/12 sources" in out
    assert main(["jobs", "--state", "succeeded", *common]) == 0
    assert job["id"] in capsys.readouterr().out
    # Another token cannot see it.
    with server.client("bob") as bob:
        assert bob.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_cancel_mid_job_keeps_done_shards_and_resubmit_resumes(server, alice, api_base):
    store = api_base["base"] / "stores" / "cancel"
    body = job_body(api_base, source="big", out="stores/cancel", k=4, shard_size=2, best_of=3)
    job = alice.post("/v1/jobs", json=body).json()
    job = wait_for(alice, job["id"], poll=0.1,
                   until=lambda j: j["progress"]["shards_done"] >= 1 or j["state"] not in ("queued", "running"))
    assert job["state"] == "running", job
    pid = job["execution"]["pid"]
    response = alice.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["state"] == "cancelled" and cancelled["cancel_requested"] is True
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    kept = done_markers(store)
    assert 1 <= len(kept) < 20, kept
    assert cancelled["progress"]["shards_done"] == len(kept)
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409  # already ended

    again = alice.post("/v1/jobs", json=body)
    assert again.status_code == 201 and again.json()["id"] != job["id"]
    resumed = wait_for(alice, again.json()["id"])
    assert resumed["state"] == "succeeded", resumed
    after = done_markers(store)
    assert len(after) == 20
    assert {name: after[name] for name in kept} == kept  # the done shards were not made again
    log = alice.get(f"/v1/jobs/{resumed['id']}/logs").text
    assert f"(20 shards, {20 - len(kept)} run now" in log
    assert verify_store(str(store)).ok


def test_restart_mid_job_finds_the_job_again(api_base):
    base = api_base["base"]
    database = f"sqlite:///{base / 'restart.sqlite'}"
    first = LiveServer(base, api_base["settings"], database, "restart-a").start()
    try:
        with first.client() as client:
            job = client.post("/v1/jobs", json=job_body(api_base, source="big", out="stores/restart", k=4,
                                                        shard_size=2, best_of=6)).json()
            job = wait_for(client, job["id"], until=lambda j: j["execution"]["pid"] is not None, poll=0.1)
    finally:
        first.kill()
    pid = job["execution"]["pid"]
    assert psutil.pid_exists(pid)  # the worker outlives the killed service
    second = LiveServer(base, api_base["settings"], database, "restart-b").start()
    try:
        with second.client() as client:
            seen = client.get(f"/v1/jobs/{job['id']}").json()
            assert seen["state"] == "running" and seen["execution"]["pid"] == pid, seen
            final = wait_for(client, job["id"])
            assert final["state"] == "succeeded", final
            assert final["progress"]["shards_done"] == 20
    finally:
        second.stop()
    assert verify_store(str(base / "stores" / "restart")).ok


def test_requests_without_a_valid_token_get_401(server):
    with server.client(None) as anonymous:
        response = anonymous.get("/v1/jobs")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"] == "missing bearer token"
        assert anonymous.get("/v1/models").status_code == 401
        assert anonymous.post("/v1/jobs", json={}).status_code == 401
        bad = anonymous.get("/v1/jobs", headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code == 401 and bad.json()["detail"] == "invalid bearer token"
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200


@pytest.fixture(scope="module")
def escape_links(api_base, tmp_path_factory):
    """Symlinks inside the service folder that point outside it."""
    outside = tmp_path_factory.mktemp("outside")
    from genview.synthetic_data import make_image_folder

    make_image_folder(outside / "imgs", classes=1, per_class=2, size=32, seed=3)
    base = api_base["base"]
    os.symlink(outside / "imgs", base / "link-to-outside-imgs")
    os.symlink(outside, base / "link-to-outside")
    return outside


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("source", "../imgs", "'..' is not allowed"),
        ("source", "imgs/../../etc", "'..' is not allowed"),
        ("source", "/etc", "outside your source roots"),
        ("source", "file:///etc", "outside your source roots"),
        ("source", "link-to-outside-imgs", "leads through a symbolic link"),
        ("source", "s3://some-bucket/images", "s3:// URL"),
        ("source", "http://example.com/list.txt", "http:// URL"),
        ("source", "simplecache::s3://some-bucket/x", "chained fsspec URLs"),
        ("out", "link-to-outside/store", "leads through a symbolic link"),
        ("out", "/tmp", "outside your output roots"),
        ("out", "s3://other-bucket/stores/x", "allowed URL roots: s3://alice-bucket/stores"),
        ("out", "s3://alice-bucket/stores-evil/x", "outside your output roots"),
        ("out", ".genview-jobs/x", "the service's job folder"),
        ("weights", "/usr", "outside your source or model roots"),
    ],
)
def test_paths_outside_the_roots_get_403(alice, api_base, escape_links, field, value, fragment):
    body = job_body(api_base, out="stores/never")
    body[field] = value
    response = alice.post("/v1/jobs", json=body)
    assert response.status_code == 403, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}: ") and fragment in detail, detail


def test_a_token_reads_only_under_its_own_roots(server, api_base):
    # The fuzz token's source roots are fuzz/ only: the service folder's images are not its to read.
    with server.client("fuzz") as fuzz:
        response = fuzz.post("/v1/jobs", json=job_body(api_base, out="fuzz/out/x"))
    assert response.status_code == 403
    assert "outside your source roots" in response.json()["detail"]


def test_a_list_file_cannot_read_outside_the_roots(alice, api_base, escape_links):
    base = api_base["base"]
    listing = base / "escape-list.txt"
    inside = sorted((base / "imgs").rglob("*.jpg"))[0]
    outside = sorted((escape_links / "imgs").rglob("*.jpg"))[0]
    listing.write_text(f"{inside}\n{outside}\n")
    job = alice.post("/v1/jobs", json=job_body(api_base, source="escape-list.txt", out="stores/escape")).json()
    job = wait_for(alice, job["id"])
    assert job["state"] == "failed"
    assert f"lists {outside}, which you may not read" in job["error"]
    assert not (base / "stores" / "escape" / "shards").exists()


@pytest.mark.parametrize(
    "change, loc, fragment",
    [
        ({"k": 0}, ["body", "k"], "greater than or equal to 1"),
        ({"k": 10**7}, ["body", "k"], "less than or equal to 1000"),
        ({"model": "nope"}, ["body", "model"], "model 'nope' is not enabled on this service; enabled models: cc-icgan"),
        ({"source": None}, ["body", "source"], "Field required"),
        ({"weights": None}, ["body", "weights"], "Field required"),
        ({"source": "no-such-folder"}, ["body", "source"], "does not exist"),
        ({"source": "9s3://bucket/x"}, ["body", "source"], "malformed URL"),
        ({"source": "s3:///no-bucket"}, ["body", "source"], "malformed URL"),
        ({"format": "gif"}, ["body", "format"], "'jpg', 'webp' or 'png'"),
        ({"shard_size": -1}, ["body", "shard_size"], "greater than or equal to 1"),
        ({"id": "../evil"}, ["body", "id"], "String should match pattern"),
        ({"colour": "red"}, ["body", "colour"], "Extra inputs are not permitted"),
        ({"ray_address": "ray://attacker:10001"}, ["body", "ray_address"], "set by the service"),
        ({"alphas": [0.5]}, ["body"], "interpolate"),
    ],
)
def test_invalid_specs_get_422_naming_the_field(alice, api_base, change, loc, fragment):
    body = job_body(api_base, out="stores/never")
    for name, value in change.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value
    response = alice.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(err["loc"] == loc and fragment in err["msg"] for err in errors), errors


def _cancel_all(client, ids):
    for job_id in ids:
        client.post(f"/v1/jobs/{job_id}/cancel")


def test_idempotent_resubmit_makes_one_job(alice, api_base):
    body = job_body(api_base, out="stores/idem")
    before = alice.get("/v1/jobs").json()["total"]
    first = alice.post("/v1/jobs", json=body, headers={"Idempotency-Key": "nightly-2024-01-01"})
    second = alice.post("/v1/jobs", json=body, headers={"Idempotency-Key": "nightly-2024-01-01"})
    try:
        assert first.status_code == 201 and second.status_code == 200
        assert second.headers["idempotent-replayed"] == "true"
        assert first.json()["id"] == second.json()["id"]
        assert alice.get("/v1/jobs").json()["total"] == before + 1
        other = alice.post("/v1/jobs", json={**body, "k": 3}, headers={"Idempotency-Key": "nightly-2024-01-01"})
        assert other.status_code == 409
        assert "different spec" in other.json()["detail"] and "k (2 then 3)" in other.json()["detail"]
        # The same store cannot be written by two jobs at once.
        busy = alice.post("/v1/jobs", json=body)
        assert busy.status_code == 409 and "already writing" in busy.json()["detail"]
    finally:
        _cancel_all(alice, [first.json()["id"]])
    # A client-chosen id works the same way, also after the job ended.
    by_id = {**body, "id": "my-job-1", "out": "stores/idem-id"}
    one = alice.post("/v1/jobs", json=by_id)
    two = alice.post("/v1/jobs", json=by_id)
    _cancel_all(alice, ["my-job-1"])
    assert one.status_code == 201 and two.status_code == 200
    assert one.json()["id"] == two.json()["id"] == "my-job-1"
    three = alice.post("/v1/jobs", json=by_id)
    assert three.status_code == 200 and three.json()["state"] == "cancelled"


def test_oversized_body_gets_413(alice, api_base):
    body = job_body(api_base, out="stores/big-body", params={"padding": "x" * 20000})
    response = alice.post("/v1/jobs", json=body)
    assert response.status_code == 413


def test_jobs_in_flight_per_token_are_limited_with_429(server, api_base):
    with server.client("bob") as bob:
        first = bob.post("/v1/jobs", json=job_body(api_base, out="stores/bob-1"))
        assert first.status_code == 201, first.text
        try:
            second = bob.post("/v1/jobs", json=job_body(api_base, out="stores/bob-2"))
            assert second.status_code == 429
            assert "limit 1" in second.json()["detail"] and second.headers["retry-after"]
        finally:
            cancelled = bob.post(f"/v1/jobs/{first.json()['id']}/cancel")
        assert cancelled.json()["state"] in ("cancelled", "succeeded")
        third = bob.post("/v1/jobs", json=job_body(api_base, out="stores/bob-2"))
        assert third.status_code == 201
        bob.post(f"/v1/jobs/{third.json()['id']}/cancel")


def test_models_metrics_and_health(server, alice):
    models = alice.get("/v1/models").json()["models"]
    assert "icgan" in [m["name"] for m in models]
    health = alice.get("/healthz").json()
    assert health["status"] == "ok" and health["executor"] == "local"
    alice.get("/v1/jobs/nope")
    metrics = alice.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for state in ("queued", "running", "succeeded", "failed", "cancelled"):
        assert f'genview_jobs{{state="{state}"}} ' in text
    assert 'genview_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"}' in text
    assert "genview_http_request_duration_seconds_bucket" in text


def test_openapi_is_versioned_and_documents_the_api(server, alice):
    schema = alice.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/logs",
                 "/v1/models", "/healthz", "/metrics"):
        assert path in paths
    post = paths["/v1/jobs"]["post"]
    assert {"201", "403", "409", "422", "429"} <= set(post["responses"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    create = schema["components"]["schemas"]["JobCreate"]
    assert {"source", "model", "weights"} <= set(create["required"])
    assert "k" in create["properties"] and "params" in create["properties"]


def test_cli_submit_wait_and_cancel(server, api_base, capsys):
    from genview.cli.main import main

    common = ["--server", server.url, "--token", TOKENS["alice"]]
    code = main(["submit", *common, "--json", "imgs", "--model", "icgan", "--weights", api_base["weights"],
                 "--k", "1", "--shard-size", "12", "--out", "stores/cli", "--device", "cpu", "--view-size", "16"])
    assert code == 0
    job = json.loads(capsys.readouterr().out)
    assert job["spec"]["k"] == 1 and job["spec"]["view_size"] == 16
    assert main(["status", job["id"], "--wait", "--poll", "0.3", *common]) == 0
    assert "succeeded" in capsys.readouterr().out
    assert main(["cancel", job["id"], *common]) == 1
    assert "already succeeded" in capsys.readouterr().err
    assert main(["submit", "imgs", "--model", "icgan", "--weights", "/usr", "--server", server.url,
                 "--token", TOKENS["alice"]]) == 1
    assert "403" in capsys.readouterr().err


def test_a_failed_job_reports_the_error(alice, api_base):
    job = alice.post("/v1/jobs", json=job_body(api_base, source="genview.toml", out="stores/failed")).json()
    job = wait_for(alice, job["id"])
    assert job["state"] == "failed" and job["execution"]["exit_code"] == 2
    assert "neither a folder nor a list file" in job["error"]
