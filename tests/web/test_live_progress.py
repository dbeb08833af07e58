"""Live progress: counts reported inside a running shard reach the service's progress, never counted twice."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa

from genview.api.progress import ProgressReader
from genview.datastore import layout
from genview.datastore.store import Store
from genview.pipeline.progress import JobProgress, LiveProgressFile


def _planned_store(tmp_path, sources=20, shard_size=10) -> Store:
    store = Store(str(tmp_path / "store"))
    store.prepare_dirs()
    store.write_sources(pa.table({"source_id": list(range(sources)), "shard": [i // shard_size for i in range(sources)]}))
    return store


def _commit_marker(store: Store, shard: int, sources: int, views: int, failed: int) -> None:
    stats = {"shard": shard, "sources": sources, "views": views, "failed": failed, "seconds": 1.0}
    store.fs.pipe_file(layout.shard_done(store.root, shard), json.dumps(stats).encode())


def test_counts_inside_a_running_shard_then_handed_to_the_marker(tmp_path):
    store = _planned_store(tmp_path)
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    live = LiveProgressFile(store, interval=0.0)
    progress = JobProgress(20, 0, "test", enabled=False, live=live)
    reader = ProgressReader(max_age=0.0)
    for _ in range(4):
        progress.sources_done(1, 3, 0, shard=0)
    progress.sources_done(1, 0, 1, shard=0)
    now = reader.read(store.url, started)
    assert (now["sources_done"], now["views_written"], now["failed_sources"], now["shards_done"]) == (5, 12, 1, 0)
    assert now["sources_in_running_shards"] == 5 and now["fraction"] == 0.25
    # The marker lands before the live file is rewritten: the shard is counted once, from its marker.
    for _ in range(5):
        progress.sources_done(1, 3, 0, shard=0)
    _commit_marker(store, 0, sources=10, views=27, failed=1)
    after = reader.read(store.url, started)
    assert (after["sources_done"], after["views_written"], after["shards_done"], after["sources_in_running_shards"]) == (10, 27, 1, 0)
    progress.shard_done({"shard": 0})
    progress.sources_done(2, 6, 0, shard=1)
    assert reader.read(store.url, started)["sources_done"] == 12
    # A lost Ray attempt is taken back off the shard it ran.
    progress.sources_done(-2, -6, 0, shard=1)
    assert reader.read(store.url, started)["sources_done"] == 10
    progress.close()
    assert not store.fs.exists(store.path(layout.LIVE_PROGRESS_FILE))


def test_a_dead_earlier_runs_file_is_ignored(tmp_path):
    store = _planned_store(tmp_path)
    live = LiveProgressFile(store, interval=0.0)
    live.add(0, 7, 21, 0)
    started_later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
    assert ProgressReader(max_age=0.0).read(store.url, started_later)["sources_done"] == 0


def test_cli_status_line_mentions_running_shards():
    from genview.api.schemas import JobPublic
    from genview.cli.api_commands import _progress_line

    job = JobPublic.model_validate({
        "id": "j", "owner": "a", "state": "running", "spec": {}, "created_at": "2026-01-01T00:00:00Z",
        "execution": {"executor": "local"},
        "progress": {"sources_total": 60, "sources_done": 14, "shards_total": 1, "shards_done": 0, "views_written": 112,
                     "failed_sources": 0, "views_per_second": 22.6, "eta_seconds": 16.3, "fraction": 0.23,
                     "sources_in_running_shards": 14, "views_in_running_shards": 112},
    })
    assert _progress_line(job) == "14/60 sources (14 in running shards), 112 views, 22.6 views/s, ETA 16 s"

