"""Recently served job-status replies, kept for a fraction of a second so that polling costs no database trip.

Clients poll GET /v1/jobs/{id}; a job's record changes a few times in its life and its progress is
itself read from the store at most once per `progress_cache_seconds`. Serving a poll from a reply
made less than `max_age` seconds ago takes it off the threadpool and the database, which is where a
loaded service spent its time (see bench/bench_api_load.py). Every change this process makes to a
job drops its entry at once, so a client sees its own submit or cancel immediately; a change made by
another replica shows within `max_age`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class StatusCache:
    """(owner, job id) -> encoded JobPublic reply, each kept at most `max_age` seconds (0 disables it)."""

    def __init__(self, max_age: float = 0.5, max_entries: int = 10_000):
        self.max_age = max_age
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
        #: When each job was last changed here: a reply read from the database before that is stale.
        self._changed: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, owner: str, job_id: str) -> bytes | None:
        """The cached reply, or None when absent or older than max_age."""
        if self.max_age <= 0:
            return None
        key = (owner, job_id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or time.monotonic() - entry[0] > self.max_age:
                self.misses += 1
                return None
            self.hits += 1
            return entry[1]

    def put(self, owner: str, job_id: str, body: bytes, made_at: float) -> None:
        """Keep a reply built from a record read at `made_at` (time.monotonic()), unless one is newer."""
        if self.max_age <= 0:
            return
        key = (owner, job_id)
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current[0] > made_at:
                return
            if self._changed.get(key, float("-inf")) >= made_at:
                return  # the job changed while this reply was being built
            self._entries[key] = (made_at, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, owner: str, job_id: str) -> None:
        """Drop a job's reply (this process changed the job)."""
        key = (owner, job_id)
        with self._lock:
            self._entries.pop(key, None)
            self._changed[key] = time.monotonic()
            self._changed.move_to_end(key)
            while len(self._changed) > self.max_entries:
                self._changed.popitem(last=False)
