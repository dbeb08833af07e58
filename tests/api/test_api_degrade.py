"""Issue 19, the service half: a database outage is 503 + Retry-After, every response carries security
headers, `--no-auth` answers only loopback names and refuses cross-site writes, /metrics is per owner,
and responses show no host paths. Real servers on loopback, a real PostgreSQL stopped mid-run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from live_process import ServerProcess, assert_security_headers

from .conftest import TOKENS, LiveServer, PostgresServer, postgres_bin, wait_for
from .test_api_server import job_body

#: Every endpoint that needs the job database, as (method, path template, json body or None).
DATABASE_ENDPOINTS = [
    ("GET", "/healthz", None),
    ("GET", "/v1/jobs", None),
    ("GET", "/v1/jobs/{id}", None),
    ("GET", "/v1/jobs/{id}/logs", None),
    ("POST", "/v1/jobs/{id}/cancel", None),
    ("POST", "/v1/jobs", "submit"),
    ("GET", "/metrics", None),
    ("GET", "/ui/jobs", None),
    ("GET", "/ui/jobs/{id}", None),
    ("GET", "/ui/jobs/{id}/store", None),
]


def _assert_unavailable(response: httpx.Response, where: str) -> None:
    assert response.status_code == 503, f"{where}: {response.status_code} {response.text[:300]}"
    assert response.headers.get("retry-after", "").isdigit(), f"{where}: no Retry-After"
    body = response.json()
    assert "database is unavailable" in body["detail"] and body["status"] == "unhealthy", f"{where}: {body}"


def _hit_every_endpoint(client: httpx.Client, api_base, job_id: str) -> list[tuple[str, httpx.Response]]:
    answers = []
    for method, template, body in DATABASE_ENDPOINTS:
        path = template.format(id=job_id)
        payload = job_body(api_base, out="stores/during-outage") if body == "submit" else None
        answers.append((f"{method} {path}", client.request(method, path, json=payload)))
    return answers


@pytest.fixture()
def own_postgres():
    """A PostgreSQL server of this test alone: the test stops it, which must not hurt the shared one."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (run .ci/install-postgres.sh)")
    folder = Path(tempfile.mkdtemp(prefix="genview-pg-outage-"))
    server = PostgresServer(folder, bin_dir).start()
    try:
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_postgres_outage_is_503_with_retry_after_and_one_log_line_then_recovers(own_postgres, api_base):
    server = LiveServer(api_base["base"], api_base["settings"], own_postgres.url, "pg-outage").start()
    try:
        with server.client("alice") as alice:
            first = alice.post("/v1/jobs", json=job_body(api_base, out="stores/pg-outage", k=1, shard_size=12))
            assert first.status_code == 201, first.text
            job_id = first.json()["id"]
            assert wait_for(alice, job_id)["state"] == "succeeded"

            own_postgres.stop()  # fast shutdown: the pooled connections are cut too
            time.sleep(1.0)  # past the status cache, and a few failed dispatcher passes
            for _ in range(3):  # every endpoint, several times over the outage
                for where, response in _hit_every_endpoint(alice, api_base, job_id):
                    _assert_unavailable(response, where)
                time.sleep(0.5)
            # Endpoints that need no database still answer.
            assert alice.get("/v1/models").status_code == 200
            assert alice.get("/").status_code == 200

            own_postgres.resume()
            deadline = time.monotonic() + 60
            while alice.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline, "the service did not recover within 60 s of the database"
                time.sleep(0.3)
            assert alice.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded"
            again = alice.post("/v1/jobs", json=job_body(api_base, out="stores/pg-after-outage", k=1, shard_size=12))
            assert again.status_code == 201, again.text
            assert wait_for(alice, again.json()["id"])["state"] == "succeeded"
            time.sleep(1.0)  # the dispatcher's next pass logs the end of the outage
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "Traceback" not in log, log[-4000:]
    assert log.count("job database unavailable") == 1, log[-4000:]
    assert log.count("job database available again") == 1, log[-4000:]


def test_sqlite_errors_that_mean_unavailable_are_told_from_bugs(tmp_path):
    """A running service on SQLite (WAL, pooled connections) does not notice a damaged file until it reads a
    page from it, so there is no live outage to provoke; the errors a damaged or locked file raises are
    classified here on real SQLite files: unavailable (503) for a file that is not a database or cannot
    be opened, a bug (500) for a constraint violation."""
    import sqlite3

    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import IntegrityError

    from genview.api.outage import database_unavailable

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not an SQLite database " * 200)
    missing = tmp_path / "no-such-folder" / "jobs.sqlite"
    for url in (f"sqlite:///{garbage}", f"sqlite:///{missing}"):
        engine = create_engine(url)
        with pytest.raises(Exception) as caught:
            with engine.connect() as connection:
                connection.execute(text("SELECT count(*) FROM sqlite_master"))
        assert database_unavailable(caught.value), repr(caught.value)
        engine.dispose()
    engine = create_engine(f"sqlite:///{tmp_path / 'ok.sqlite'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(IntegrityError) as caught, engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (1)"))
    assert not database_unavailable(caught.value)
    assert isinstance(caught.value.orig, sqlite3.IntegrityError)
    engine.dispose()


# -- security headers ---------------------------------------------------------------------------------

def test_every_response_carries_the_security_headers(server, alice, api_base):
    with server.client(None) as anonymous:
        responses = {
            "GET / (dashboard)": anonymous.get("/"),
            "GET /jobs/x (dashboard)": anonymous.get("/jobs/x"),
            "GET /static/app.js": anonymous.get("/static/app.js"),
            "GET /static/nope": anonymous.get("/static/nope"),
            "GET /healthz": anonymous.get("/healthz"),
            "GET /v1/jobs 401": anonymous.get("/v1/jobs"),
            "GET /docs": anonymous.get("/docs"),
            "GET /openapi.json": anonymous.get("/openapi.json"),
            "GET /nowhere 404": anonymous.get("/nowhere"),
            "GET /ui/img bad signature": anonymous.get("/ui/img/x/0/y.jpg", params={"exp": 1, "sig": "0"}),
        }
    responses.update({
        "GET /v1/jobs": alice.get("/v1/jobs"),
        "GET /ui/jobs": alice.get("/ui/jobs"),
        "POST /v1/jobs 422": alice.post("/v1/jobs", json={"source": "imgs"}),
        "POST /v1/jobs 403": alice.post("/v1/jobs", json=job_body(api_base, source="/etc", out="stores/never")),
        "GET /v1/jobs/x 404": alice.get("/v1/jobs/x"),
        "GET /metrics": alice.get("/metrics"),
    })
    for where, response in responses.items():
        assert_security_headers(response, where)


# -- --no-auth: loopback only, Host allow-list, no cross-site writes ------------------------------------

@pytest.fixture(scope="module")
def no_auth_server(api_base):
    """`genview serve --no-auth` on 127.0.0.1 with the same model root (no tokens)."""
    base = api_base["base"]
    settings = base / "no-auth.toml"
    settings.write_text(f'model_roots = ["{api_base["weights"]}"]\nreconcile_interval = 0.3\ncancel_grace_seconds = 5\n')
    server = ServerProcess(["serve", "--no-auth", "--host", "127.0.0.1", "--port", "{port}", "--settings", str(settings),
                            "--log-level", "warning"], cwd=base, log=base / "server-no-auth.log",
                           env={"GENVIEW_DATABASE_URL": f"sqlite:///{base / 'no-auth.sqlite'}",
                                "GENVIEW_JOBS_DIR": str(base / ".genview-jobs-no-auth")}).start("/healthz")
    yield server
    server.stop()


def test_no_auth_refuses_to_start_on_a_non_loopback_interface(api_base):
    result = subprocess.run([sys.executable, "-m", "genview.cli.main", "serve", "--no-auth", "--host", "0.0.0.0",
                             "--port", "1"], cwd=api_base["base"], capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if not k.startswith("GENVIEW_")})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bind to 127.0.0.1, not 0.0.0.0" in lines[0], result.stderr


def test_no_auth_answers_only_loopback_host_names(no_auth_server):
    with httpx.Client(base_url=no_auth_server.url, timeout=30) as client:
        for host in ("127.0.0.1", f"127.0.0.1:{no_auth_server.port}", f"localhost:{no_auth_server.port}",
                     f"[::1]:{no_auth_server.port}"):
            assert client.get("/v1/jobs", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", f"evil.example:{no_auth_server.port}", "127.0.0.1.nip.io", "10.0.0.1"):
            for path in ("/v1/jobs", "/", "/metrics"):
                response = client.get(path, headers={"Host": host})
                assert response.status_code == 421, (host, path, response.status_code)
                assert "does not answer to the host name" in response.json()["detail"]
                assert_security_headers(response, f"{host} {path}")


def test_a_cross_site_post_cannot_cancel_a_job_without_auth(no_auth_server, api_base):
    """What a page on evil.example can make a browser send with fetch(url, {method: "POST", mode: "no-cors"})."""
    with httpx.Client(base_url=no_auth_server.url, timeout=60) as client:
        body = job_body(api_base, source="big", out="stores/no-auth-csrf", k=32, shard_size=40)
        created = client.post("/v1/jobs", json=body)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        wait_for(client, job_id, until=lambda job: job["state"] == "running", timeout=120)
        simple = {"Content-Type": "text/plain;charset=UTF-8"}
        for headers in ({"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
                        {"Origin": "http://evil.example"},  # a browser without Sec-Fetch-* headers
                        {"Origin": "null"},  # a sandboxed frame
                        {"Sec-Fetch-Site": "same-site"},  # another port of localhost
                        ):
            refused = client.post(f"/v1/jobs/{job_id}/cancel", headers={**simple, **headers}, content=b"x")
            assert refused.status_code == 403, (headers, refused.text)
            assert "cross-site request refused" in refused.json()["detail"]
            again = client.post("/v1/jobs", headers={**simple, **headers}, content=b"{}")
            assert again.status_code == 403, headers
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "running" and not job["cancel_requested"], job
        # The dashboard's own request (same origin) and a non-browser client still may.
        own = {"Origin": no_auth_server.url, "Sec-Fetch-Site": "same-origin"}
        cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=own)
        assert cancelled.status_code == 200, cancelled.text
        assert wait_for(client, job_id)["state"] == "cancelled"


# -- /metrics per owner -----------------------------------------------------------------------------------

def test_metrics_show_a_token_only_its_own_jobs(server, api_base):
    with server.client("bob") as bob, server.client("alice") as alice, server.client("ops") as ops:
        made = bob.post("/v1/jobs", json=job_body(api_base, out="stores/metrics-bob", k=1, shard_size=12))
        assert made.status_code == 201, made.text
        wait_for(bob, made.json()["id"])
        alice.get("/v1/jobs")
        mine = alice.get("/metrics").text
        theirs = bob.get("/metrics").text
        everything = ops.get("/metrics").text
    assert 'genview_jobs{owner="alice",state="succeeded"}' in mine
    assert "bob" not in mine and "genview_http_requests_total" not in mine and "finished_total" not in mine
    assert 'genview_jobs{owner="bob",state="succeeded"}' in theirs and "alice" not in theirs

    def count(text: str, labels: str) -> int:
        line = next(line for line in text.splitlines() if line.startswith(f"genview_jobs{{{labels}}} "))
        return int(line.rsplit(" ", 1)[1])

    # The admin token sees the service: every owner's jobs and the HTTP counters.
    assert count(everything, 'state="succeeded"') >= count(mine, 'owner="alice",state="succeeded"') + \
        count(theirs, 'owner="bob",state="succeeded"')
    assert "genview_http_requests_total" in everything


# -- no host paths in responses ------------------------------------------------------------------------

def test_responses_show_paths_as_the_client_names_them_never_the_host_path(server, alice, api_base):
    base = str(api_base["base"])
    created = alice.post("/v1/jobs", json={**job_body(api_base, out="stores/no-host-paths", k=1, shard_size=12),
                                           "id": "no-host-paths"})
    assert created.status_code == 201, created.text
    spec = created.json()["spec"]
    assert (spec["source"], spec["out"]) == ("imgs", "stores/no-host-paths")
    assert spec["weights"] == api_base["weights"]  # under its model root, spelt as the operator configured it
    assert base not in created.text
    job = wait_for(alice, "no-host-paths")
    assert job["state"] == "succeeded"
    # The default store folder is shown relative to the service folder too.
    default = alice.post("/v1/jobs", json=job_body(api_base, k=1, shard_size=12))
    assert default.status_code in (200, 201, 409), default.text
    assert base not in default.text
    if default.status_code == 201:
        assert not os.path.isabs(default.json()["spec"]["out"])
        wait_for(alice, default.json()["id"])
    # A 409 that compares two specs, the job list, the logs and the dashboard's fragments.
    conflict = alice.post("/v1/jobs", json={**job_body(api_base, out="stores/no-host-paths-2", k=1), "id": "no-host-paths"})
    assert conflict.status_code == 409 and "stores/no-host-paths" in conflict.text, conflict.text
    for response in (conflict, alice.get("/v1/jobs"), alice.get("/v1/jobs/no-host-paths/logs"),
                     alice.get("/ui/jobs"), alice.get("/ui/jobs/no-host-paths"), alice.get("/ui/jobs/no-host-paths/store")):
        assert response.status_code == 200 or response is conflict, response.text
        assert base not in response.text, f"{response.request.url}: {response.text[:2000]}"
    # The store page names the store and its sources relative to the service folder.
    assert "stores/no-host-paths" in alice.get("/ui/jobs/no-host-paths/store").text


def test_a_failed_jobs_error_shows_no_host_path(server, alice, api_base):
    """A job whose worker fails with a message naming its files (a weights folder that is not a model)."""
    bad = api_base["base"] / "not-weights"
    bad.mkdir(exist_ok=True)
    (bad / "readme.txt").write_text("not a checkpoint")
    created = alice.post("/v1/jobs", json=job_body(api_base, out="stores/bad-weights", weights="not-weights"))
    assert created.status_code == 201, created.text
    job = wait_for(alice, created.json()["id"])
    assert job["state"] == "failed" and job["error"], job
    logs = alice.get(f"/v1/jobs/{job['id']}/logs").text
    base = str(api_base["base"])
    assert base not in job["error"] and base not in logs, (job["error"], logs[-2000:])
    assert TOKENS["alice"] not in logs
