"""Job progress read from the store itself: sources.parquet for the plan, done markers for what is made."""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import threading
import time
from typing import Any

from genview.datastore import layout
from genview.datastore.store import Store


def _mtime(info: dict[str, Any]) -> float | None:
    """Modification time (epoch seconds) from an fsspec `ls(detail=True)` entry, on any filesystem."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


class _StoreState:
    """What has been read of one store; done markers never change once written, so they are read once."""

    def __init__(self) -> None:
        self.sources_total: int | None = None
        self.shards_total: int | None = None
        self.stats: dict[int, tuple[dict[str, Any], float | None]] = {}
        self.live: dict[str, Any] | None = None  # OUT/_progress.json of a running job, re-read every time
        self.read_at = 0.0
        self.lock = threading.Lock()


class ProgressReader:
    """Reads and caches store progress for many jobs; a reading is reused for `max_age` seconds."""

    def __init__(self, max_age: float = 1.0):
        self.max_age = max_age
        self._stores: dict[str, _StoreState] = {}
        self._lock = threading.Lock()

    def _state(self, out: str) -> _StoreState:
        with self._lock:
            if out not in self._stores:
                self._stores[out] = _StoreState()
            return self._stores[out]

    def _refresh(self, out: str, state: _StoreState) -> None:
        """Read the plan once and every done marker not read yet."""
        store = Store(out)
        if state.sources_total is None and store.fs.exists(store.path(layout.SOURCES_FILE)):
            # Counts only (genview.json, else the Parquet footer): never the listing's rows.
            state.sources_total, state.shards_total = store.plan_size()
        state.live = read_live(store)
        version = store.format_version
        markers_dir = store.path(layout.markers_dir(version))
        if not store.fs.exists(markers_dir):
            return
        for info in store.fs.ls(markers_dir, detail=True):
            shard = layout.marker_shard(posixpath.basename(info["name"]), version)
            if shard is None or shard in state.stats:
                continue
            try:
                stats = json.loads(store.fs.cat_file(info["name"]))
            except (OSError, ValueError):
                continue  # a marker is written atomically; a failure here is transient
            state.stats[shard] = (stats, _mtime(info))

    def read(self, out: str, started_at: dt.datetime | None, now: float | None = None) -> dict[str, Any]:
        """Return the Progress fields of the store at `out` for a job that started at `started_at`."""
        state = self._state(out)
        with state.lock:
            if time.monotonic() - state.read_at >= self.max_age:
                try:
                    self._refresh(out, state)
                except (OSError, ValueError):
                    pass  # store not created yet, or unreachable: report what is known
                state.read_at = time.monotonic()
            stats = dict(state.stats)
            sources_total, shards_total, live = state.sources_total, state.shards_total, state.live
        return summarize(stats, sources_total, shards_total, started_at, now, live=live)

    def forget(self, out: str) -> None:
        """Drop the cache of a store (a finished job's progress is kept in the database instead)."""
        with self._lock:
            self._stores.pop(out, None)


def read_live(store: Store) -> dict[str, Any] | None:
    """The live progress file of a running job (None when absent or being replaced)."""
    try:
        return json.loads(store.fs.cat_file(store.path(layout.LIVE_PROGRESS_FILE)))
    except (OSError, ValueError):
        return None


#: A live file older than the job's start by more than this is a dead earlier run's leftover.
_LIVE_CLOCK_SLACK = 5.0


def _live_counts(live: dict[str, Any] | None, done: set[int], start: float | None) -> tuple[int, int, int, float | None]:
    """Sources, views, failed inside running shards (those without a done marker yet), and the run's views/s."""
    if not live or (start is not None and float(live.get("started_at") or 0) < start - _LIVE_CLOCK_SLACK):
        return 0, 0, 0, None
    sources = views = failed = 0
    for shard, counts in (live.get("running_shards") or {}).items():
        if int(shard) in done:
            continue  # committed since the file was written: the marker counts it
        sources += max(int(counts[0]), 0)
        views += max(int(counts[1]), 0)
        failed += max(int(counts[2]), 0)
    rate = None
    first, updated = live.get("first_source_at"), live.get("updated_at")
    # Under half a second after the first source the span is too short for a meaningful rate.
    if first is not None and updated is not None and updated - first >= 0.5 and int(live.get("run_views") or 0) > 0:
        rate = int(live["run_views"]) / (float(updated) - float(first))
    return sources, views, failed, rate


def summarize(
    stats: dict[int, tuple[dict[str, Any], float | None]],
    sources_total: int | None,
    shards_total: int | None,
    started_at: dt.datetime | None,
    now: float | None = None,
    live: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Total done shards plus what running shards reported; rate and ETA from this job's run."""
    now = time.time() if now is None else now
    start = started_at.timestamp() if started_at is not None else None
    running_sources, running_views, running_failed, live_rate = _live_counts(live, set(stats), start)
    sources_done = sum(int(s.get("sources", 0)) for s, _ in stats.values()) + running_sources
    if sources_total is not None:
        sources_done = min(sources_done, sources_total)
    views = sum(int(s.get("views", 0)) for s, _ in stats.values()) + running_views
    failed = sum(int(s.get("failed", 0)) for s, _ in stats.values()) + running_failed
    mine = sorted(
        ((mtime, s) for s, mtime in stats.values() if start is not None and mtime is not None and mtime >= start),
        key=lambda pair: pair[0],
    )
    views_per_second = sources_per_second = None
    if len(mine) >= 2 and mine[-1][0] > mine[0][0]:
        # Between the first and last marker of this run: excludes model loading before the first shard.
        span = mine[-1][0] - mine[0][0]
        views_per_second = sum(int(s.get("views", 0)) for _, s in mine[1:]) / span
        sources_per_second = sum(int(s.get("sources", 0)) for _, s in mine[1:]) / span
    elif len(mine) == 1:
        first = mine[0][1]
        seconds = float(first.get("seconds") or 0)
        if seconds > 0:
            views_per_second = int(first.get("views", 0)) / seconds
            sources_per_second = int(first.get("sources", 0)) / seconds
    if live_rate is not None:
        # The live file counts every source of this run since the first one: the most current rate.
        run_views = int(live.get("run_views") or 0)
        views_per_second = live_rate
        sources_per_second = live_rate * int(live.get("run_sources") or 0) / run_views if run_views else None
    eta = None
    if sources_total is not None:
        remaining = max(sources_total - sources_done, 0)
        if remaining == 0:
            eta = 0.0
        elif sources_per_second:
            eta = remaining / sources_per_second
    return {
        "sources_total": sources_total,
        "sources_done": sources_done,
        "shards_total": shards_total,
        "shards_done": len(stats),
        "views_written": views,
        "failed_sources": failed,
        "views_per_second": round(views_per_second, 3) if views_per_second is not None else None,
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "fraction": round(sources_done / sources_total, 4) if sources_total else None,
        "sources_in_running_shards": running_sources,
        "views_in_running_shards": running_views,
        "live_updated_at": float(live["updated_at"]) if running_sources or running_views else None,
    }


def empty_progress() -> dict[str, Any]:
    """Progress of a job whose store has not been looked at."""
    return summarize({}, None, None, None)


def store_complete(out: str) -> bool:
    """True when every planned shard of the store at `out` has its done marker."""
    try:
        store = Store(out)
        if not store.exists():
            return False
        planned = set(range(store.num_shards()))  # shards are numbered 0..N-1, extensions included
        return bool(planned) and planned <= store.done_shards()
    except (OSError, ValueError):
        return False
