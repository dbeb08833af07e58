"""The FastAPI application factory: versioned routers, body-size limit, metrics, and the dispatcher lifespan."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import anyio
import anyio.to_thread
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from genview import __version__
from genview.api.db import init_db, make_engine, make_sessionmaker
from genview.api.errors import install_error_handlers
from genview.api.executors import Executor, make_executor
from genview.api.metrics import MetricsMiddleware, RequestMetrics
from genview.api.progress import ProgressReader
from genview.api.reconcile import Dispatcher
from genview.api.schemas import enable_models
from genview.api.routers import health, jobs, models
from genview.api.security import Authenticator
from genview.api.service import AppContext
from genview.api.settings import Settings, load_settings
from genview.api.status_cache import StatusCache

DESCRIPTION = """\
Submit `genview generate` jobs over HTTP and follow them. A job's spec has the same fields and
checks as the CLI's flags. Jobs run in worker processes (or as Ray jobs), never in the web
process; their progress is read from the store itself. Every /v1 call needs
`Authorization: Bearer TOKEN`; each token reads only under its source roots and writes only
under its output roots.
"""


def create_app(settings: Settings | None = None, executor: Executor | None = None) -> FastAPI:
    """Build the service for `settings` (default: from GENVIEW_* variables and the settings file)."""
    settings = settings or load_settings()
    enable_models(settings.enabled_models)  # before any request body is parsed (JobCreate checks the model first)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Few threads beat many: 40 runnable threads convoy on the GIL and starve the event loop.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.http_threads
        engine = make_engine(settings.resolved_database_url)
        await run_in_threadpool(init_db, engine)
        sessions = make_sessionmaker(engine)
        progress = ProgressReader(settings.progress_cache_seconds)
        runner = executor or make_executor(settings)
        dispatcher = Dispatcher(sessions, runner, progress, settings.max_running_jobs,
                                settings.reconcile_interval, settings.cancel_grace_seconds, settings.replica_name,
                                model_roots=settings.canonical_model_roots())
        # Before the first request: find jobs an earlier service process left running.
        await run_in_threadpool(dispatcher.run_once)
        status_cache = StatusCache(settings.status_cache_seconds)
        dispatcher.on_change = status_cache.forget
        dispatcher.start()
        app.state.ctx = AppContext(settings=settings, sessions=sessions, executor=runner, dispatcher=dispatcher,
                                   progress=progress, authenticator=Authenticator(settings), engine=engine,
                                   status_cache=status_cache, submit_limiter=anyio.CapacityLimiter(settings.submit_threads))
        try:
            yield
        finally:
            # Workers keep running: a restarted service reconciles them.
            await run_in_threadpool(dispatcher.stop)
            engine.dispose()

    app = FastAPI(
        title="genview job service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        openapi_tags=[
            {"name": "jobs", "description": "generation jobs"},
            {"name": "models", "description": "registered generators"},
            {"name": "service", "description": "health and metrics"},
        ],
    )
    install_error_handlers(app)
    app.state.metrics = RequestMetrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(jobs.router, prefix="/v1")
    app.include_router(models.router, prefix="/v1")
    app.include_router(health.router)
    # The web dashboard (pages at /, fragments under /ui): same tokens, same job records.
    from genview.web.dashboard import create_dashboard_router

    app.include_router(create_dashboard_router(list(settings.tokens)))
    return app
