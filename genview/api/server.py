"""Run the service with uvicorn (`genview serve`)."""

from __future__ import annotations

import gc
import logging
import sys

from genview.api.settings import Settings
from genview.web.guards import is_loopback


def check_security(settings: Settings) -> None:
    """Refuse to start without tokens, or with auth disabled on a non-loopback interface."""
    if settings.auth_disabled:
        if not is_loopback(settings.host):
            raise ValueError(
                f"auth_disabled is for local use only: bind to 127.0.0.1, not {settings.host} "
                "(or configure tokens with GENVIEW_TOKENS / the settings file)"
            )
    elif not settings.tokens:
        raise ValueError(
            "no API tokens configured: set GENVIEW_TOKENS=token1,token2 or [tokens] in the settings file "
            "(GENVIEW_SETTINGS_FILE / --settings); for local use only, GENVIEW_AUTH_DISABLED=true or --no-auth"
        )


def run_server(settings: Settings) -> None:
    """Serve the API on settings.host:settings.port until interrupted."""
    import uvicorn

    from genview.api.app import create_app

    check_security(settings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The event loop thread competes for the GIL with the request threads; with the default 5 ms
    # switch interval a status read that needs no thread still waits out a whole slice of a
    # database-bound submit (measured with bench/bench_api_load.py).
    sys.setswitchinterval(settings.gil_switch_interval)
    app = create_app(settings)
    # Each request allocates thousands of short-lived container objects (SQLAlchemy, pydantic): with
    # the default gen-0 threshold (700) the cyclic collector ran hundreds of times a second and its
    # older-generation passes stalled every request at once. Fewer, younger collections, and the
    # start-up objects (modules, the app) frozen out of them, roughly halved p99 in the load bench.
    gc.set_threshold(20_000, 20, 100)
    gc.freeze()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=5, access_log=settings.log_level == "debug")
