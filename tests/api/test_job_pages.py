"""The job list pages by keyset (cursor) from the (owner, created_at, public_id) index of migration 0003."""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm
from .conftest import LiveServer

from genview.api.db import init_db, make_engine
from genview.api.job_rows import add_finished_jobs


def test_cursor_pages_walk_every_job_once_newest_first(tmp_path, api_base):
    database = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    engine = make_engine(database)
    init_db(engine)  # the migrations, 0003 included
    add_finished_jobs(engine, "alice", 1203)
    add_finished_jobs(engine, "bob", 40)
    with engine.connect() as connection:
        indexes = {row[1] for row in connection.execute(sa.text("PRAGMA index_list(genview_jobs)"))}
        assert "ix_genview_jobs_owner_created_id" in indexes
        plan = " ".join(str(row[-1]) for row in connection.execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT * FROM genview_jobs WHERE owner = 'alice' AND (created_at, public_id) < "
            "('2026-01-01 00:10:00.000000', 'job-0000600') ORDER BY created_at DESC, public_id DESC LIMIT 100")))
        assert "ix_genview_jobs_owner_created_id" in plan and "TEMP B-TREE" not in plan, plan
    engine.dispose()

    server = LiveServer(tmp_path, api_base["settings"], database, "pages").start()
    try:
        with server.client("alice") as alice:
            seen, cursor, pages = [], None, 0
            while True:
                params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                page = alice.get("/v1/jobs", params=params).json()
                assert page["total"] == 1203
                seen += [job["id"] for job in page["items"]]
                pages += 1
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert pages == 13 and len(seen) == len(set(seen)) == 1203
            assert seen == [f"job-{i:07d}" for i in reversed(range(1203))]  # newest first, none of bob's
            old = alice.get("/v1/jobs", params={"limit": 100, "offset": 1200}).json()  # old clients still page
            assert [job["id"] for job in old["items"]] == seen[1200:] and old["next_offset"] is None
            both = alice.get("/v1/jobs", params={"cursor": page_cursor_of(alice), "offset": 5})
            assert both.status_code == 422 and "not both" in both.text
            bad = alice.get("/v1/jobs", params={"cursor": "not-a-cursor"})
            assert bad.status_code == 422 and "cursor" in bad.text
    finally:
        server.stop()


def page_cursor_of(client) -> str:
    return client.get("/v1/jobs", params={"limit": 1}).json()["next_cursor"]


def test_cursor_pages_on_postgresql(postgres):
    """The keyset comparison (created_at, public_id) < (..) and migration 0003 on PostgreSQL."""
    from genview.api import service
    from genview.api.settings import Principal

    engine = make_engine(postgres.fresh_database("pages"))
    init_db(engine)
    add_finished_jobs(engine, "alice", 250)
    alice = Principal(name="alice", source_roots=[], output_roots=[], max_jobs_in_flight=1)
    with engine.connect() as connection:
        names = {row[0] for row in connection.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'genview_jobs'"))}
    assert "ix_genview_jobs_owner_created_id" in names
    sessions = sa.orm.sessionmaker(engine, expire_on_commit=False)
    seen, after = [], None
    while True:
        with sessions() as session:
            jobs, total = service.list_jobs(session, alice, None, 100, after=after)
        seen += [job.public_id for job in jobs]
        if len(jobs) < 100:
            break
        after = service.parse_cursor(service.page_cursor(jobs[-1]))
    assert total == 250 and seen == [f"job-{i:07d}" for i in reversed(range(250))]
    engine.dispose()
