"""Bulk job records for measuring the job list (bench/bench_scale_ops.py and its test): finished jobs, no stores."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from genview.api.db import Job
from genview.api.progress import empty_progress


def add_finished_jobs(engine: Engine, owner: str, count: int, start: dt.datetime | None = None,
                      batch: int = 5000) -> None:
    """Insert `count` succeeded jobs of `owner`, one second apart (ids job-000000...), in batches."""
    start = start or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    progress = empty_progress()
    with engine.begin() as connection:
        for first in range(0, count, batch):
            rows = []
            for i in range(first, min(count, first + batch)):
                created = start + dt.timedelta(seconds=i)
                rows.append(dict(
                    id=f"{owner}-{i:07d}", public_id=f"job-{i:07d}", owner=owner, state="succeeded",
                    spec={"source": "imgs", "out": f"stores/{i}", "model": "icgan"}, spec_digest="0" * 64,
                    out=f"stores/{i}", read_roots=[], executor="subprocess", cancel_requested=False,
                    progress=progress, created_at=created, started_at=created, finished_at=created,
                    updated_at=created,
                ))
            connection.execute(insert(Job), rows)
