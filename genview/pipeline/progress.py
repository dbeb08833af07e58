"""One progress bar for a whole job: sources done, views/s, failed sources, ETA; optionally a live file."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable

from tqdm.auto import tqdm

from genview.datastore import layout
from genview.datastore.fs import is_local, write_atomic
from genview.datastore.store import Store


class LiveProgressFile:
    """Writes the progress of the shards still running to OUT/_progress.json, at most every `interval` s.

    Done markers only appear when a shard is committed; this file is how a service reading the
    store sees a shard move while it runs. It holds only what no marker has counted yet (per
    running shard), so a reader adds it to the markers' totals without counting anything twice.
    """

    def __init__(self, store: Store, interval: float = 1.0):
        self.store = store
        self.path = store.path(layout.LIVE_PROGRESS_FILE)
        self.interval = interval
        self.started_at = time.time()
        self.first_source_at: float | None = None
        self.running: dict[int, list[int]] = {}  # shard -> [sources, views, failed] reported so far
        self.run_totals = [0, 0, 0]  # sources, views, failed reported by this run (committed or not)
        self._written_at = 0.0
        self._lock = threading.Lock()

    def add(self, shard: int | None, sources: int, views: int, failed: int) -> None:
        """Count sources finished inside a running shard (negative to take a lost attempt back)."""
        with self._lock:
            if self.first_source_at is None and sources > 0:
                self.first_source_at = time.time()
            for index, value in enumerate((sources, views, failed)):
                self.run_totals[index] += value
            if shard is not None:
                counts = self.running.setdefault(int(shard), [0, 0, 0])
                for index, value in enumerate((sources, views, failed)):
                    counts[index] += value
        self.write(force=False)

    def committed(self, shard: int | None) -> None:
        """A shard's done marker exists now: its counts live there, not here."""
        with self._lock:
            if shard is not None:
                self.running.pop(int(shard), None)
        self.write(force=True)

    def snapshot(self) -> dict[str, Any]:
        """The file's content now."""
        with self._lock:
            return {
                "pid": os.getpid(),
                "started_at": self.started_at,
                "first_source_at": self.first_source_at,
                "updated_at": time.time(),
                "run_sources": self.run_totals[0],
                "run_views": self.run_totals[1],
                "run_failed": self.run_totals[2],
                "running_shards": {str(shard): counts for shard, counts in sorted(self.running.items())},
            }

    def write(self, force: bool) -> None:
        """Write the file when forced or when the last write is older than the interval."""
        now = time.monotonic()
        if not force and now - self._written_at < self.interval:
            return
        self._written_at = now
        data = json.dumps(self.snapshot()).encode()
        try:
            if is_local(self.store.fs):
                write_atomic(self.store.fs, self.path, data)
            else:
                self.store.fs.pipe_file(self.path, data)  # one PUT: an object appears whole
        except OSError:
            pass  # progress is advisory: a failed write must never fail the job

    def remove(self) -> None:
        """Delete the file when the run ends (the done markers then say everything)."""
        try:
            if self.store.fs.exists(self.path):
                self.store.fs.rm(self.path)
        except OSError:
            pass


class JobProgress:
    """Counts sources and views as shards report them; shows a tqdm bar unless disabled."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool = True,
                 on_shard: Callable[[dict[str, Any]], None] | None = None,
                 live: LiveProgressFile | None = None):
        self.start = time.perf_counter()
        self.views = 0
        self.failed = 0
        self.on_shard = on_shard
        self.live = live
        self.bar = tqdm(total=total, initial=initial, unit="img", desc=desc, disable=not enabled, dynamic_ncols=True)

    def sources_done(self, count: int, views: int, failed: int, shard: int | None = None) -> None:
        """Record `count` finished sources that made `views` views, `failed` of them failed (of `shard`)."""
        self.views += views
        self.failed += failed
        self.bar.update(count)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix(views_s=f"{self.views / elapsed:.1f}", failed=self.failed, refresh=False)
        if self.live is not None:
            self.live.add(shard, count, views, failed)

    def shard_done(self, stats: dict[str, Any]) -> None:
        """Record a committed shard's stats."""
        if self.live is not None:
            self.live.committed(stats.get("shard"))
        if self.on_shard is not None:
            self.on_shard(stats)

    def close(self) -> None:
        """Close the bar (and remove the live file)."""
        self.bar.close()
        if self.live is not None:
            self.live.remove()
