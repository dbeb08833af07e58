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


def _names(shards: dict[int, object]) -> str:
    names = [layout.shard_name(s) for s in sorted(shards)]
    return ", ".join(names) if len(names) <= 8 else f"{names[0]} .. {names[-1]} ({len(names)})"


def run_with_leases(backend: Backend, plan: ShardPlan, progress: JobProgress, leases: ShardLeases,
                    poll_seconds: float | None = None) -> set[int]:
    """Make every shard of the plan that no other process makes; return the shards made here.

    A shard is claimed (its lease taken) right before it is started, so N processes running the same
    command split the work shard by shard: in this process one shard at a time; a Ray backend is
    given every shard left and claims each as it hands it to an actor (its actors start once), and
    gives each lease back as soon as the shard commits. A shard leased by a live process is left to
    it; when nothing is free the loop waits and looks again, so a dead holder's shard is taken over
    once its lease expires, and the run ends only when every shard of the plan is done (here or
    elsewhere). A shard whose I/O keeps failing is given back and reported at the end.
    """
    poll = poll_seconds if poll_seconds is not None else min(5.0, max(0.2, leases.expiry / 4))
    one_at_a_time = isinstance(backend, InProcessBackend)
    remaining = dict(plan.shards)
    made: set[int] = set()
    failed: dict[int, str] = {}
    while remaining:
        claimed: set[int] = set()
        finished: set[int] = set()  # found done by another process

        def claim(shard: int) -> bool:
            """Take the shard's lease if it is free and the shard not done; True when this process makes it."""
            if shard in claimed:
                return not _done(plan, shard)  # a retried run does not make again what its first try committed
            if _done(plan, shard):
                finished.add(shard)
                return False
            if not leases.try_acquire(shard):
                return False
            if _done(plan, shard):  # finished by its previous holder between our two looks
                leases.release(shard)
                finished.add(shard)
                return False
            claimed.add(shard)
            return True

        # Look for one free shard before starting anything: when every shard left is leased by a live
        # process there is nothing to start (a Ray backend would start its actors for nothing).
        first = next((shard for shard in sorted(remaining) if claim(shard)), None)
        for shard in finished:
            remaining.pop(shard, None)
        finished.clear()
        if first is None:
            if remaining:
                time.sleep(poll)  # every shard left is leased by a live process: wait for it to finish or expire
            continue
        if one_at_a_time:
            attempt = dataclasses.replace(plan, shards={first: remaining[first]}, before_commit=leases.check)
        else:
            attempt = dataclasses.replace(plan, shards=dict(sorted(remaining.items())), before_commit=leases.check,
                                          claim=claim, after_commit=leases.release)
        try:
            # A shard is the unit of retry: a write that fails transiently is redone from scratch.
            with_retries(backend.run, attempt, progress, what=f"shard(s) {_names(attempt.shards)}")
        except LeaseLost as exc:
            print(f"genview: {exc}; leaving it to that process", file=sys.stderr)
            for shard in claimed & set(leases.held):
                leases.release(shard)
            continue  # still in `remaining`: done by the other process, or taken back if it dies too
        except ShardIOError as exc:
            print(f"genview: {exc}; the shard is left for a rerun", file=sys.stderr)
            for shard in claimed:
                if _done(plan, shard):
                    made.add(shard)  # committed before the error (a Ray run makes several shards)
                else:
                    failed[shard] = str(exc)
                if shard in leases.held:
                    leases.release(shard)
                del remaining[shard]
            continue
        for shard in finished:  # the Ray backend's claims found these done elsewhere
            remaining.pop(shard, None)
        for shard in claimed:
            if shard in leases.held:  # not given back at its commit already
                leases.release(shard)
            if _done(plan, shard):
                made.add(shard)
                del remaining[shard]
    if failed:
        raise ShardIOError(
            f"{len(failed)} shard(s) could not be made because of I/O errors that outlived the retries "
            f"({', '.join(layout.shard_name(s) for s in sorted(failed))}); no source was marked failed for them. "
            "Rerun the same command to make them; the done shards are kept"
        )
    return made
