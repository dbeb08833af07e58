"""The job database going away: every endpoint answers 503 + Retry-After, and the log says so once per outage.

A database that is down (PostgreSQL stopped or unreachable, an SQLite file that cannot be read) is
not a bug of the request: a traceback per request (hundreds a second) would bury the one line that
matters. The first failure logs one warning, the first success after it one info line with the
outage's length; the failures in between are counted, not logged.
"""

from __future__ import annotations

import logging
import threading
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

log = logging.getLogger("genview.api")

#: Seconds a client is asked to wait before retrying while the database is down.
RETRY_AFTER_SECONDS = 5
#: The body of every 503 (no driver message: it names the database host and user).
UNAVAILABLE_DETAIL = "the job database is unavailable; retry later"


def database_unavailable(error: BaseException) -> bool:
    """True for errors that mean "the database cannot be reached or read", not "this query is wrong".

    OperationalError: connection refused or lost, server shutting down, SQLite "unable to open" or
    "database is locked"; InterfaceError: a closed connection; TimeoutError: no pooled connection in
    time; a plain DatabaseError (not one of its subclasses, which are bugs or bad data) is SQLite's
    "file is not a database" / "disk image is malformed".
    """
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return type(error) is sa_exc.DatabaseError


class Outage:
    """Whether the database is down right now, as the last database call saw it (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.failures = 0  # failed calls during the current outage

    def failed(self, error: BaseException, where: str) -> None:
        """A database call failed with an "unavailable" error: log it if it starts an outage."""
        with self._lock:
            self.failures += 1
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
        # One line, no traceback: the driver's first line says why (refused, shut down, locked...).
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        log.warning("job database unavailable (%s: %s); answering 503 until it is back",
                    where, reason[0] if reason else type(error).__name__)

    def succeeded(self) -> None:
        """A database call worked: end the outage if there was one."""
        if self.down_since is None:  # the common case, without the lock
            return
        with self._lock:
            if self.down_since is None:
                return
            seconds, failures = time.monotonic() - self.down_since, self.failures
            self.down_since, self.failures = None, 0
        log.warning("job database available again after %.1f s (%d database calls failed meanwhile)", seconds, failures)


def unavailable_response() -> JSONResponse:
    """503 with Retry-After and a body that says the database is unavailable."""
    return JSONResponse(
        status_code=503,
        content={"detail": UNAVAILABLE_DETAIL, "status": "unhealthy", "database": "unavailable"},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install_outage_handlers(app: FastAPI, outage: Outage) -> None:
    """Turn "database unavailable" errors from any endpoint into 503 + Retry-After (others stay 500s)."""

    async def handler(request: Request, error: Exception) -> JSONResponse:
        if not database_unavailable(error):
            raise error  # a real bug: the server error middleware logs it with its traceback
        outage.failed(error, f"{request.method} {request.url.path}")
        return unavailable_response()

    for kind in (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, sa_exc.DatabaseError):
        app.add_exception_handler(kind, handler)
