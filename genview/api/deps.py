"""FastAPI dependencies: the app context and the authenticated caller.

There is deliberately no yield-dependency database session: FastAPI serialises a sync endpoint's
response in another threadpool thread, so a session released only by the dependency's exit keeps
its connection while waiting for a thread; under load every thread then waits for a connection
and the service deadlocks. Endpoints open `ctx.sessions()` themselves and give the connection back
before returning.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from genview.api.service import AppContext
from genview.api.settings import Principal

bearer_scheme = HTTPBearer(auto_error=False, description="a token from GENVIEW_TOKENS or the settings file")


async def get_context(request: Request) -> AppContext:
    """The shared context the lifespan built (async: sync dependencies each take a pool thread)."""
    return request.app.state.ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


async def current_principal(
    ctx: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The caller behind the bearer token; 401 without a valid one (unless auth is disabled).

    Async: it only compares strings, so it needs no threadpool thread.
    """
    return ctx.authenticator(credentials.credentials if credentials else None)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
