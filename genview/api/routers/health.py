"""/healthz and /metrics (unversioned, for load balancers and Prometheus)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import text

from genview import __version__
from genview.api.deps import ContextDep, bearer_scheme
from genview.api.schemas import Health

router = APIRouter(tags=["service"])
log = logging.getLogger("genview.api")


@router.get("/healthz", response_model=Health, summary="Liveness and database check",
            responses={503: {"model": Health, "description": "the database is unreachable"}})
def healthz(ctx: ContextDep) -> Health:
    """200 when the service and its job database answer (no token needed)."""
    try:
        with ctx.sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception:
        # The driver's message names the database host (and sometimes the user): log it, don't return it.
        log.warning("health check: database unreachable", exc_info=True)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="database unreachable") from None
    return Health(status="ok", version=__version__, database="ok", executor=ctx.executor.name)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(request: Request, ctx: ContextDep) -> PlainTextResponse:
    """Jobs by state and HTTP request counts and latencies (a token is needed if metrics_require_auth)."""
    if ctx.settings.metrics_require_auth:
        credentials: HTTPAuthorizationCredentials | None = await bearer_scheme(request)
        ctx.authenticator(credentials.credentials if credentials else None)

    def collect() -> dict[str, int]:
        with ctx.sessions() as session:
            return ctx.dispatcher.count_by_state(session)

    from starlette.concurrency import run_in_threadpool

    counts = await run_in_threadpool(collect)
    body = request.app.state.metrics.render(counts, dict(ctx.dispatcher.finished_counts), ctx.executor.name, __version__)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")
