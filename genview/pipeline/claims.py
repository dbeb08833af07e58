"""Run a plan's shards under leases: each shard is made by exactly one of the processes sharing a store."""

from __future__ import annotations

import dataclasses
import sys
import time

from genview.datastore import layout
from genview.datastore.lease import LeaseLost, ShardLeases
from genview.datastore.retry import ShardIOError, with_retries
from genview.pipeline.backends import Backend, InProcessBackend, ShardPlan
from genview.pipeline.progress import JobProgress


def _done(plan: ShardPlan, shard: int) -> bool:
    return plan.store.fs.exists(plan.store.marker_path(shard))


def run_with_leases(backend: Backend, plan: ShardPlan, progress: JobProgress, leases: ShardLeases,
                    poll_seconds: float | None = None) -> set[int]:
    """Make every shard of the plan that no other process makes; return the shards made here.

    In this process shards are claimed one at a time, so N processes running the same command
    split the work shard by shard. A Ray backend is given every shard free at the time in one
    plan (its actors are started once). A shard leased by a live process is left to it; when
    nothing is free the loop waits and looks again, so a dead holder's shard is taken over once
    its lease expires, and the run ends only when every shard of the plan is done (here or
    elsewhere). A shard whose I/O keeps failing is given back and reported at the end.
    """
    poll = poll_seconds if poll_seconds is not None else min(5.0, max(0.2, leases.expiry / 4))
    one_at_a_time = isinstance(backend, InProcessBackend)
    remaining = dict(plan.shards)
    made: set[int] = set()
    failed: dict[int, str] = {}
    while remaining:
        claimed = {}
        for shard in sorted(remaining):
            if _done(plan, shard):
                del remaining[shard]
                continue
            if not leases.try_acquire(shard):
                continue
            if _done(plan, shard):  # finished by its previous holder between our two looks
                leases.release(shard)
                del remaining[shard]
                continue
            claimed[shard] = remaining[shard]
            if one_at_a_time:
                break
        if not claimed:
            if remaining:
                time.sleep(poll)  # every shard left is leased by a live process: wait for it to finish or expire
            continue
        attempt = dataclasses.replace(plan, shards=claimed, before_commit=leases.check)
        names = ", ".join(layout.shard_name(s) for s in sorted(claimed))
        try:
            # A shard is the unit of retry: a write that fails transiently is redone from scratch.
            with_retries(backend.run, attempt, progress, what=f"shard(s) {names}")
        except LeaseLost as exc:
            print(f"genview: {exc}; leaving it to that process", file=sys.stderr)
            for shard in claimed:
                leases.release(shard)
            continue  # still in `remaining`: done by the other process, or taken back if it dies too
        except ShardIOError as exc:
            print(f"genview: {exc}; the shard is left for a rerun", file=sys.stderr)
            for shard in claimed:
                failed[shard] = str(exc)
                leases.release(shard)
                del remaining[shard]
            continue
        for shard in claimed:
            made.add(shard)
            leases.release(shard)
            del remaining[shard]
    if failed:
        raise ShardIOError(
            f"{len(failed)} shard(s) could not be made because of I/O errors that outlived the retries "
            f"({', '.join(layout.shard_name(s) for s in sorted(failed))}); no source was marked failed for them. "
            "Rerun the same command to make them; the done shards are kept"
        )
    return made
