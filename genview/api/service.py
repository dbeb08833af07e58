"""What the job endpoints do: submit (idempotent, limited), read, list, cancel, logs."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from fastapi import HTTPException, status
from sqlalchemy import bindparam, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from genview.api.db import Job, utcnow
from genview.api.executors import Executor
from genview.api.outage import Outage
from genview.api.public_paths import PathDisplay
from genview.api.progress import ProgressReader, empty_progress
from genview.api.reconcile import Dispatcher
from genview.api.schemas import IN_FLIGHT, TERMINAL, Execution, JobCreate, JobPublic, JobState, Progress
from genview.api.security import Authenticator, authorize_spec
from genview.api.settings import Principal, Settings
from genview.api.status_cache import StatusCache
from genview.pipeline.spec import GenerateSpec


@dataclasses.dataclass
class AppContext:
    """Everything the endpoints share; built in the app's lifespan and kept on app.state."""

    settings: Settings
    sessions: sessionmaker[Session]
    executor: Executor
    dispatcher: Dispatcher
    progress: ProgressReader
    authenticator: Authenticator
    engine: Any
    status_cache: StatusCache = dataclasses.field(default_factory=StatusCache)
    submit_limiter: Any = None  # anyio.CapacityLimiter for POST /v1/jobs (None: the default threadpool)
    outage: Outage = dataclasses.field(default_factory=Outage)
    paths: PathDisplay | None = None  # how host paths are shown to clients (None: as they are)


def spec_digest(spec: GenerateSpec) -> str:
    """Stable hash of a resolved spec (two submissions are the same job when these agree)."""
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def request_digest(body: JobCreate) -> str:
    """Stable hash of a submission as the client sent it (before any path is resolved)."""
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    names = sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
    return ", ".join(f"{name} ({old.get(name)!r} then {new.get(name)!r})" for name in names)


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"you have no job {job_id!r}")


def to_public(ctx: AppContext, job: Job) -> JobPublic:
    """The API view of a job; progress comes from the store while the job can still change it."""
    if job.state in TERMINAL and job.progress is not None:
        progress = job.progress
    else:
        try:
            progress = ctx.progress.read(job.out, job.started_at)
        except Exception:  # an unreadable store must not break status reads
            progress = empty_progress()
    return JobPublic(
        id=job.public_id,
        owner=job.owner,
        state=JobState(job.state),
        spec=ctx.paths.spec(job.spec) if ctx.paths else job.spec,
        idempotency_key=job.idempotency_key,
        cancel_requested=bool(job.cancel_requested),
        error=ctx.paths.text(job.error) if ctx.paths else job.error,
        progress=Progress(**progress),
        execution=Execution(executor=job.executor, pid=job.pid, external_id=job.external_id, exit_code=job.exit_code),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _replay_or_conflict(ctx: AppContext, existing: Job, digest: str, spec: GenerateSpec, by: str) -> Job:
    """Return the earlier job for an identical resubmission; 409 when the key is reused for another spec."""
    if existing.spec_digest != digest:
        old, new = existing.spec, spec.model_dump(mode="json")
        if ctx.paths is not None:
            old, new = ctx.paths.spec(old), ctx.paths.spec(new)
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"{by} was already used for job {existing.public_id} with a different spec: " + _differences(old, new),
        )
    return existing


def _find_existing(session: Session, principal: Principal, job_id: str | None, key: str | None) -> tuple[Job | None, str]:
    """The caller's own earlier job with this id or key (ids are per owner: others' jobs are never found)."""
    if job_id is not None:
        job = session.scalar(select(Job).where(Job.owner == principal.name, Job.public_id == job_id))
        if job is not None:
            return job, f"job id {job_id!r}"
    if key is not None:
        job = session.scalar(select(Job).where(Job.owner == principal.name, Job.idempotency_key == key))
        if job is not None:
            return job, f"Idempotency-Key {key!r}"
    return None, ""


def submit(ctx: AppContext, session: Session, principal: Principal, body: JobCreate,
           idempotency_key: str | None) -> tuple[Job, bool]:
    """Create a job (True) or return the one an earlier identical submission made (False)."""
    key = idempotency_key if idempotency_key is not None else body.id
    existing, by = _find_existing(session, principal, body.id, key)
    request = request_digest(body)
    if existing is not None and existing.request_digest == request:
        return existing, False  # the very request that made it: checked then, no need to resolve it again
    spec = authorize_spec(body, principal, ctx.settings)
    digest = spec_digest(spec)
    if existing is not None:
        return _replay_or_conflict(ctx, existing, digest, spec, by), False
    in_flight = session.scalar(
        select(func.count()).select_from(Job).where(Job.owner == principal.name, Job.state.in_(IN_FLIGHT))
    )
    if int(in_flight or 0) >= principal.max_jobs_in_flight:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"{in_flight} jobs already queued or running for {principal.name} "
            f"(limit {principal.max_jobs_in_flight}); wait for one to finish or cancel one",
            headers={"Retry-After": "30"},
        )
    busy = session.scalar(select(Job).where(Job.out == spec.out, Job.state.in_(IN_FLIGHT)))
    if busy is not None:
        shown = repr(body.out) if body.out is not None else "the default store folder"
        detail = f"out: your job {busy.public_id} is already writing {shown}; cancel it or wait"
        if busy.owner != principal.name:
            detail = f"out: another job is already writing {shown}"
        raise HTTPException(status.HTTP_409_CONFLICT, detail=detail)
    internal_id = f"job-{uuid.uuid4().hex[:16]}"
    job = Job(
        id=internal_id,
        public_id=body.id or internal_id,
        owner=principal.name,
        idempotency_key=key,
        state=JobState.queued.value,
        spec=spec.model_dump(mode="json"),
        spec_digest=digest,
        request_digest=request,
        out=spec.out,
        read_roots=list(principal.source_roots),
        weight_roots=ctx.settings.read_roots(principal),
        executor=ctx.executor.name,
        cancel_requested=False,
        created_at=utcnow(),
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        # A concurrent identical submission won the race: answer as its replay.
        session.rollback()
        existing, by = _find_existing(session, principal, body.id, key)
        if existing is None:
            raise
        return _replay_or_conflict(ctx, existing, digest, spec, by), False
    ctx.dispatcher.wake()
    return job, True


def get_job(session: Session, principal: Principal, job_id: str) -> Job:
    """The caller's job, or 404 (other owners' jobs are not revealed)."""
    job = session.scalar(select(Job).where(Job.owner == principal.name, Job.public_id == job_id))
    if job is None:
        raise _not_found(job_id)
    return job


def page_cursor(job: Job) -> str:
    """The opaque cursor that continues a job list after `job` (its created time and id, base64url)."""
    raw = json.dumps([job.created_at.isoformat(), job.public_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """Inverse of `page_cursor`; 422 for anything that is not one."""
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        when = dt.datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(job_id, str):
            raise ValueError(cursor)
        return when, job_id
    except (ValueError, TypeError, json.JSONDecodeError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            detail="cursor is not a cursor this service gave (use next_cursor of the previous page)") from None


def list_jobs(session: Session, principal: Principal, state: JobState | None, limit: int, offset: int = 0,
              after: tuple[dt.datetime, str] | None = None) -> tuple[list[Job], int]:
    """A page of the caller's jobs, newest first, and how many match.

    `after` = (created_at, public_id) of the last job of the previous page: a keyset page, read
    from the (owner, created_at, public_id) index wherever it falls. `offset` (older clients)
    skips rows, which costs the rows skipped.
    """
    where = [Job.owner == principal.name]
    if state is not None:
        where.append(Job.state == state.value)
    total = session.scalar(select(func.count()).select_from(Job).where(*where))
    if after is not None:
        where.append(tuple_(Job.created_at, Job.public_id) < tuple_(bindparam("after_created", after[0], type_=Job.created_at.type),
                                                                   bindparam("after_id", after[1])))
    query = select(Job).where(*where).order_by(Job.created_at.desc(), Job.public_id.desc()).limit(limit)
    if offset:
        query = query.offset(offset)
    return list(session.scalars(query).all()), int(total or 0)


def cancel_job(ctx: AppContext, session: Session, principal: Principal, job_id: str) -> Job:
    """Cancel the caller's queued or running job; 409 if it already ended."""
    job = get_job(session, principal, job_id)
    if job.state in TERMINAL:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"job {job_id!r} already {job.state}")
    ctx.dispatcher.cancel(session, job)
    session.refresh(job)
    ctx.status_cache.forget(job.owner, job.public_id)
    return job
