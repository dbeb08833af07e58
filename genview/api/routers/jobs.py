"""/v1/jobs: submit, list, read, cancel, logs."""

from __future__ import annotations

import time
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, HTTPException, Path, Query, Response, status
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from genview.api import service
from genview.api.deps import ContextDep, PrincipalDep
from genview.api.schemas import ErrorBody, JobCreate, JobList, JobPublic, JobState

router = APIRouter(prefix="/jobs", tags=["jobs"], responses={401: {"model": ErrorBody, "description": "missing or invalid bearer token"}})

JobId = Annotated[str, Path(min_length=1, max_length=64, description="job id")]
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such job (or not yours)"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    summary="Submit a generation job",
    responses={
        200: {"model": JobPublic, "description": "an identical earlier submission (same job id or Idempotency-Key): that job"},
        403: {"model": ErrorBody, "description": "a path or URL outside your roots"},
        409: {"model": ErrorBody, "description": "job id / key reused with another spec, or the store is being written by another job"},
        413: {"description": "request body too large"},
        429: {"model": ErrorBody, "description": "too many of your jobs are queued or running"},
    },
)
async def create_job(
    body: JobCreate,
    ctx: ContextDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
               description="submitting twice with the same key makes one job"),
    ] = None,
) -> Response:
    """Queue `genview generate` for the spec (same fields and checks as the CLI flags).

    Relative paths are taken from the service folder; every path must lie under your roots (403
    otherwise). Idempotency: the same `id` or `Idempotency-Key` with the same spec returns the first
    job (200, header `Idempotent-Replayed: true`), with another spec 409. A cancelled job is resumed
    by submitting its spec again with a new key: the store keeps its done shards.
    """
    def submit() -> tuple[JobPublic, bool]:
        with ctx.sessions() as session:
            job, created = service.submit(ctx, session, principal, body, idempotency_key)
            return service.to_public(ctx, job), created

    # Submissions take their own few threads: a burst of them queues here, not in front of status reads.
    public, created = await anyio.to_thread.run_sync(submit, limiter=ctx.submit_limiter)
    headers = {"Location": f"/v1/jobs/{public.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    # Encoded here: JobPublic is already validated, FastAPI would validate it a second time.
    return Response(public.model_dump_json(), status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
                    headers=headers, media_type="application/json")


@router.get("", response_model=JobList, summary="List your jobs")
def list_jobs(
    ctx: ContextDep,
    principal: PrincipalDep,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="page size")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000,
                                 description="jobs to skip (older clients; a cursor pages in constant time)")] = 0,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")] = None,
) -> JobList:
    """Your jobs, newest first, one page at a time: follow `next_cursor` (keyset pages, as fast at the end as at the start)."""
    if cursor is not None and offset:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="give cursor or offset, not both")
    after = service.parse_cursor(cursor) if cursor is not None else None
    with ctx.sessions() as session:
        jobs, total = service.list_jobs(session, principal, state, limit, offset, after=after)
        items = [service.to_public(ctx, job) for job in jobs]
    more = len(jobs) == limit
    next_cursor = service.page_cursor(jobs[-1]) if jobs and more else None
    next_offset = offset + len(jobs) if cursor is None and offset + len(jobs) < total else None
    return JobList(items=items, total=total, limit=limit, offset=offset, next_offset=next_offset, next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobPublic, summary="A job's state and progress", responses=NOT_FOUND)
async def get_job(job_id: JobId, ctx: ContextDep, principal: PrincipalDep) -> Response:
    """State, progress read from the store (sources, views, failures, views/s, ETA) and the error if it failed.

    A reply may be up to `status_cache_seconds` old (changes made through this replica show at once).
    """
    body = ctx.status_cache.get(principal.name, job_id)
    if body is None:

        def load() -> bytes:
            made_at = time.monotonic()
            with ctx.sessions() as session:
                public = service.to_public(ctx, service.get_job(session, principal, job_id))
            data = public.model_dump_json().encode()
            ctx.status_cache.put(principal.name, job_id, data, made_at)
            return data

        body = await run_in_threadpool(load)
    return Response(body, media_type="application/json")


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    summary="Cancel a job",
    responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "the job already ended"}},
)
def cancel_job(job_id: JobId, ctx: ContextDep, principal: PrincipalDep) -> JobPublic:
    """Stop the job's worker (SIGTERM, then SIGKILL after the grace period); done shards stay in the store.

    Submitting the same spec again (without the old idempotency key) resumes the store.
    """
    with ctx.sessions() as session:
        return service.to_public(ctx, service.cancel_job(ctx, session, principal, job_id))


@router.get(
    "/{job_id}/logs",
    response_class=PlainTextResponse,
    summary="The end of a job's log",
    responses={**NOT_FOUND, 200: {"content": {"text/plain": {}}, "description": "log lines"}},
)
def job_logs(
    job_id: JobId,
    ctx: ContextDep,
    principal: PrincipalDep,
    tail: Annotated[int, Query(ge=1, le=100_000, description="lines from the end")] = 200,
) -> PlainTextResponse:
    """The worker's stdout/stderr (the `genview generate` output)."""
    with ctx.sessions() as session:
        job = service.get_job(session, principal, job_id)
    text = ctx.executor.logs(job, tail) if (job.job_dir or job.external_id) else ""
    return PlainTextResponse(ctx.paths.text(text) if ctx.paths else text)
