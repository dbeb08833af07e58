"""The dispatcher: starts queued jobs and reconciles running ones with their workers and stores.

It runs once when the service starts (so jobs left running by an earlier service process are found
again: still alive -> running, gone -> succeeded / failed / cancelled from their exit status or
store) and then every `reconcile_interval` seconds, or sooner when woken by a submit or cancel.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Callable, Sequence

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from genview.api.db import Job, utcnow
from genview.api.executors import Executor, WorkerStatus
from genview.api.progress import ProgressReader, store_complete
from genview.api.schemas import IN_FLIGHT, JobState
from genview.pipeline.spec import GenerateSpec

log = logging.getLogger("genview.api")

#: A job claimed for starting but without a recorded worker after this long was lost mid-start.
START_TIMEOUT = dt.timedelta(seconds=120)


class Dispatcher:
    """Moves jobs through queued -> running -> terminal states; one pass at a time."""

    def __init__(self, sessions: sessionmaker[Session], executor: Executor, progress: ProgressReader,
                 max_running: int, interval: float, cancel_grace: float, replica: str = "local",
                 model_roots: Sequence[str] = ()):
        self.sessions = sessions
        #: The service's model roots now: weights roots of jobs queued before they were recorded per job.
        self.model_roots = list(model_roots)
        self.replica = replica
        self.executor = executor
        self.progress = progress
        self.max_running = max_running
        self.interval = interval
        self.cancel_grace = cancel_grace
        self.lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished_counts: dict[str, int] = {}
        #: Called with (owner, public id) whenever this dispatcher changes a job (the status cache listens).
        self.on_change: Callable[[str, str], None] | None = None

    def _changed(self, job: Job) -> None:
        if self.on_change is not None:
            self.on_change(job.owner, job.public_id)

    # -- the loop ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background loop."""
        self._thread = threading.Thread(target=self._loop, name="genview-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop (workers keep running; a new service finds them again)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wake(self) -> None:
        """Run a pass soon (after a submit or a cancel)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except Exception:  # the loop must survive a database hiccup; the next pass retries
                log.exception("dispatcher pass failed")

    def run_once(self) -> None:
        """Reconcile every running job, then start queued jobs while there is room."""
        with self.lock:
            self.reconcile_running()
            self.start_queued()

    # -- ownership ---------------------------------------------------------------------------
    def _mine(self):
        """The running jobs this replica watches: its own local workers (a pid means nothing on
        another machine), or every Ray job (the cluster is shared by all replicas)."""
        where = [Job.state == JobState.running.value, Job.executor == self.executor.name]
        if self.executor.name == "local":
            # Rows from before replicas existed have no claimant: the (only) service watches them.
            where.append(or_(Job.claimed_by == self.replica, Job.claimed_by.is_(None)))
        return where

    # -- reconcile -----------------------------------------------------------------------------
    def reconcile_running(self) -> None:
        """Check every running job this replica watches against its worker."""
        with self.sessions() as session:
            jobs = session.scalars(select(Job).where(*self._mine())).all()
            for job in jobs:
                self.reconcile_job(session, job)

    def reconcile_job(self, session: Session, job: Job) -> None:
        """Bring one running job's record in line with its worker."""
        if job.pid is None and job.external_id is None:
            if job.started_at is not None and utcnow() - job.started_at > START_TIMEOUT:
                self.finish(session, job, WorkerStatus(running=False, error="the worker never started (service stopped while starting it)"))
            return
        status = self.executor.poll(job)
        if status.running:
            if job.cancel_requested:
                # A cancel that a stopped service did not finish: finish it now.
                self.executor.cancel(job, self.cancel_grace)
                status = self.executor.poll(job)
            if status.running:
                return
        self.finish(session, job, status)

    def finish(self, session: Session, job: Job, status: WorkerStatus) -> None:
        """Record how a job ended: succeeded, cancelled or failed, with its final progress."""
        if status.exit_code == 0:
            state, error = JobState.succeeded, None
        elif job.cancel_requested:
            state, error = JobState.cancelled, None
        elif status.exit_code is None and store_complete(job.out):
            state, error = JobState.succeeded, None  # killed after its last shard committed
        else:
            state = JobState.failed
            error = status.error or f"worker exited with code {status.exit_code}"
        self.progress.forget(job.out)
        progress = self.progress.read(job.out, job.started_at)
        self.progress.forget(job.out)
        # Conditional: when two replicas both see a worker end, only the first records it.
        recorded = session.execute(
            update(Job).where(Job.id == job.id, Job.state.in_(IN_FLIGHT))
            .values(state=state.value, error=error, exit_code=status.exit_code, finished_at=utcnow(), progress=progress)
        ).rowcount
        session.commit()
        session.refresh(job)
        self._changed(job)
        if not recorded:
            return
        self.finished_counts[state.value] = self.finished_counts.get(state.value, 0) + 1
        log.info("job %s %s%s", job.id, state.value, f": {error}" if error else "")

    # -- start -----------------------------------------------------------------------------------
    def start_queued(self) -> None:
        """Start the oldest queued jobs while fewer than max_running jobs run."""
        with self.sessions() as session:
            running = session.scalar(select(func.count()).select_from(Job).where(*self._mine()))
            free = self.max_running - int(running or 0)
            if free <= 0:
                return
            queued = session.scalars(
                select(Job).where(Job.state == JobState.queued.value).order_by(Job.created_at).limit(free)
            ).all()
            for job in queued:
                # Claim atomically: with several replicas on one database only one starts it (the
                # UPDATE's WHERE is re-checked under the row lock; the loser updates no row).
                claimed = session.execute(
                    update(Job).where(Job.id == job.id, Job.state == JobState.queued.value)
                    .values(state=JobState.running.value, started_at=utcnow(), executor=self.executor.name,
                            claimed_by=self.replica)
                ).rowcount
                session.commit()
                if not claimed:
                    continue
                session.refresh(job)
                self._changed(job)
                self.progress.forget(job.out)
                try:
                    info = self.executor.start(job.id, GenerateSpec.model_validate(job.spec), job.read_roots,
                                               self.weight_roots(job))
                except Exception as exc:
                    log.exception("could not start job %s", job.id)
                    self.finish(session, job, WorkerStatus(running=False, error=f"could not start the worker: {exc}"))
                    continue
                job.pid, job.pid_start_time = info.pid, info.pid_start_time
                job.external_id, job.job_dir = info.external_id, info.job_dir
                session.commit()
                self._changed(job)
                log.info("job %s started (%s)", job.id, info)

    def weight_roots(self, job: Job) -> list[str]:
        """The roots a job's weights may come from.

        Jobs queued before migration 0002 have none recorded (NULL): they get the roots the current
        settings give, the job's source roots plus the service's model roots, never "no check".
        """
        if job.weight_roots is not None:
            return list(job.weight_roots)
        return list(job.read_roots) + [root for root in self.model_roots if root not in job.read_roots]

    # -- cancel ------------------------------------------------------------------------------------
    def cancel(self, session: Session, job: Job) -> None:
        """Cancel a queued or running job and record the outcome (the job may finish first)."""
        with self.lock:
            job.cancel_requested = True
            session.commit()
            cancelled_queued = session.execute(
                update(Job).where(Job.id == job.id, Job.state == JobState.queued.value)
                .values(state=JobState.cancelled.value, finished_at=utcnow())
            ).rowcount
            session.commit()
            session.refresh(job)
            self._changed(job)
            if cancelled_queued:
                job.progress = self.progress.read(job.out, None)
                session.commit()
                self.finished_counts["cancelled"] = self.finished_counts.get("cancelled", 0) + 1
                return
            if job.state != JobState.running.value:
                return
            if job.executor == self.executor.name and (
                    self.executor.name != "local" or job.claimed_by in (self.replica, None)):
                # Another machine's local worker is stopped by its own replica (it sees cancel_requested).
                self.executor.cancel(job, self.cancel_grace)
                self.reconcile_job(session, job)
        self.wake()

    def count_by_state(self, session: Session) -> dict[str, int]:
        """Jobs per state (for /metrics)."""
        rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        counts = {state.value: 0 for state in JobState}
        counts.update({state: int(n) for state, n in rows})
        return counts
