"""Job records in a real PostgreSQL server (started by the tests): migrations, and two replicas on one database."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from genview.api.db import make_engine
from genview.api.migrate import VERSION_TABLE, current_revision, head_revision, upgrade

from .conftest import LiveServer, wait_for
from .test_api_server import job_body


def test_migrations_create_the_schema_on_postgres_once_even_when_replicas_start_together(postgres):
    engine = make_engine(postgres.fresh_database("migrate"))
    assert engine.dialect.driver == "psycopg"  # postgresql:// means psycopg 3
    errors: list[BaseException] = []

    def migrate():
        try:
            upgrade(engine)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert current_revision(engine) == head_revision()
    columns = {column["name"] for column in inspect(engine).get_columns("genview_jobs")}
    assert {"id", "public_id", "owner", "claimed_by", "weight_roots", "state", "spec"} <= columns
    uniques = {tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints("genview_jobs")}
    assert ("owner", "public_id") in uniques and ("owner", "idempotency_key") in uniques
    engine.dispose()


def test_a_sqlite_database_from_before_migrations_is_upgraded_in_place(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    upgrade(engine, "0001")
    with engine.begin() as connection:
        # What genview 0.1 (create_all, no version table) left behind.
        connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        connection.execute(text(
            "INSERT INTO genview_jobs (id, owner, state, spec, spec_digest, out, read_roots, executor, "
            "cancel_requested, created_at, updated_at) VALUES ('my-old-job', 'alice', 'succeeded', '{}', 'd', '/o', "
            "'[]', 'local', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        row = connection.execute(text("SELECT id, public_id, claimed_by FROM genview_jobs")).one()
    assert tuple(row) == ("my-old-job", "my-old-job", None)
    engine.dispose()


def _summary_lines(log: str) -> int:
    """How many `genview generate` runs finished in a worker log (one summary line each)."""
    return len(re.findall(r"sources -> \d+ views", log))


@pytest.mark.slow
def test_two_replicas_on_one_postgres_database_run_each_job_once(postgres, api_base):
    """Two real `genview serve` processes share one PostgreSQL database and one service folder; jobs are
    submitted to both; each job is claimed by exactly one replica and its worker runs exactly once."""
    database = postgres.fresh_database("replicas")
    base: Path = api_base["base"]
    settings = base / "replicas.toml"  # the shared settings, with room for alice's 4 jobs at once
    settings.write_text(api_base["settings"].read_text().replace("max_jobs_in_flight = 3", "max_jobs_in_flight = 8"))
    replicas = [
        LiveServer(base, settings, database, f"replica-{name}",
                   env={"GENVIEW_REPLICA_NAME": f"replica-{name}", "GENVIEW_JOBS_DIR": str(base / ".genview-jobs-pg")})
        for name in ("a", "b")
    ]
    for replica in replicas:
        replica.start()
    try:
        clients = [replica.client("alice") for replica in replicas]
        ids = []
        for index in range(4):
            # Queued on both replicas at once: each dispatcher pass races the other for the oldest job.
            body = job_body(api_base, out=f"stores/replicas-{index}", k=1, shard_size=12)
            response = clients[index % 2].post("/v1/jobs", json=body)
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        jobs = [wait_for(clients[0], job_id, timeout=240) for job_id in ids]
        assert [job["state"] for job in jobs] == ["succeeded"] * 4, jobs
        # Both replicas see the same records.
        assert {j["id"]: j["state"] for j in clients[1].get("/v1/jobs").json()["items"] if j["id"] in ids} == \
            dict.fromkeys(ids, "succeeded")

        engine = make_engine(database)
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT public_id, claimed_by, job_dir FROM genview_jobs WHERE public_id = ANY(:ids)"),
                {"ids": ids}).all()
        engine.dispose()
        assert len(rows) == 4
        claimed = {row.claimed_by for row in rows}
        assert claimed == {"replica-a", "replica-b"}, claimed  # both replicas ran jobs: the race was real
        for row in rows:
            log = (Path(row.job_dir) / "worker.log").read_text()
            assert _summary_lines(log) == 1, f"{row.public_id} ran {_summary_lines(log)} times:\n{log}"
    finally:
        for replica in replicas:
            replica.stop()


def test_the_service_runs_jobs_with_postgres_records(postgres, api_base):
    """Submit, idempotent replay, per-owner ids and cancel through a server on PostgreSQL."""
    database = postgres.fresh_database("service")
    server = LiveServer(api_base["base"], api_base["settings"], database, "pg-single").start()
    try:
        with server.client("alice") as alice, server.client("bob") as bob:
            body = {**job_body(api_base, out="stores/pg-one", k=1, shard_size=12), "id": "nightly"}
            first = alice.post("/v1/jobs", json=body)
            again = alice.post("/v1/jobs", json=body)
            assert (first.status_code, again.status_code) == (201, 200)
            theirs = bob.post("/v1/jobs", json={**body, "out": "stores/pg-bob"})
            assert theirs.status_code == 201 and theirs.json()["owner"] == "bob"
            assert bob.post("/v1/jobs/nightly/cancel").json()["state"] == "cancelled"
            job = wait_for(alice, "nightly")
            assert job["state"] == "succeeded" and job["progress"]["views_written"] == 12
            time.sleep(0.1)
            metrics = alice.get("/metrics").text
            assert 'genview_jobs{owner="alice",state="succeeded"}' in metrics  # a token sees its own jobs
    finally:
        server.stop()
