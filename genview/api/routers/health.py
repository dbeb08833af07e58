"""/healthz and /metrics (unversioned, for load balancers and Prometheus)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import text

from genview import __version__
from genview.api.deps import ContextDep, bearer_scheme
from genview.api.outage import RETRY_AFTER_SECONDS, UNAVAILABLE_DETAIL
from genview.api.schemas import Health

router = APIRouter(tags=["service"])
log = logging.getLogger("genview.api")


@router.get("/healthz", response_model=Health, summary="Liveness and database check",
            responses={503: {"model": Health, "description": "the database is unavailable (with Retry-After)"}})
def healthz(ctx: ContextDep) -> Response:
    """200 when the service and its job database answer, 503 with Retry-After when not (no token needed)."""
    try:
        with ctx.sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to answer SELECT 1 is "unhealthy"
        # The driver's message names the database host (and sometimes the user): log it (once), don't return it.
        ctx.outage.failed(exc, "health check")
        body = Health(status="unhealthy", version=__version__, database="unavailable", executor=ctx.executor.name,
                      detail=UNAVAILABLE_DETAIL)
        return Response(body.model_dump_json(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                        media_type="application/json", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return Response(Health(status="ok", version=__version__, database="ok", executor=ctx.executor.name).model_dump_json(),
                    media_type="application/json")


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(request: Request, ctx: ContextDep) -> PlainTextResponse:
    """Jobs by state, and HTTP request counts and latencies.

    Per owner: a token sees only its own jobs' counts; an admin token (`admin = true` in the settings
    file) sees every owner's and the service-wide counters, as does anyone when metrics_require_auth is off.
    """
    owner = None
    if ctx.settings.metrics_require_auth:
        credentials: HTTPAuthorizationCredentials | None = await bearer_scheme(request)
        principal = ctx.authenticator(credentials.credentials if credentials else None)
        owner = None if principal.admin else principal.name

    def collect() -> dict[str, int]:
        with ctx.sessions() as session:
            return ctx.dispatcher.count_by_state(session, owner)

    from starlette.concurrency import run_in_threadpool

    counts = await run_in_threadpool(collect)
    rendered = request.app.state.metrics
    if owner is None:
        body = rendered.render(counts, dict(ctx.dispatcher.finished_counts), ctx.executor.name, __version__)
    else:
        body = rendered.render_owner(owner, counts, ctx.executor.name, __version__)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")
