"""HTTP protections shared by `genview serve` and `genview browse`: security headers, Host allow-list, CSRF.

- Every response carries a Content-Security-Policy (scripts, styles and images from this origin
  only; no framing), X-Frame-Options: DENY, X-Content-Type-Options: nosniff and
  Referrer-Policy: no-referrer. The pages have no inline script or style, so the policy needs no
  'unsafe-inline'; only FastAPI's /docs and /redoc pages (which load Swagger UI / ReDoc from their
  CDN with an inline bootstrap script, and hold no data) get a looser one.
- Host allow-list (servers without a login: `serve --no-auth`, `browse`): a request whose Host is
  not a loopback name or the bind address is refused with 421, so a DNS-rebinding page (evil.example
  resolving to 127.0.0.1) cannot read or drive the service from the victim's browser.
- CSRF: a state-changing request (POST, PUT, PATCH, DELETE) that a browser marks as coming from
  another site (Sec-Fetch-Site other than same-origin/none, or an Origin that is not this server's)
  is refused with 403, whatever its content type: a cross-site `no-cors` POST cannot cancel a job.
  Clients that are not browsers send neither header and are not affected.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The policy of every page and API response.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
#: FastAPI's interactive API docs: Swagger UI / ReDoc from jsDelivr and an inline bootstrap script.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "connect-src 'self'; worker-src blob:; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Sec-Fetch-Site values of requests made by this origin's own pages or typed by the user.
_SAME_SITE_FETCH = frozenset({"same-origin", "none"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(bind_host: str) -> frozenset[str] | None:
    """The Host names a login-less server on `bind_host` answers to; None (any) for a wildcard bind."""
    if bind_host in ("0.0.0.0", "::", ""):
        return None
    return frozenset({*LOOPBACK_NAMES, bind_host.strip("[]").lower()})


def host_name(value: str) -> str:
    """The name part of a Host header ('[::1]:8000' -> '::1', 'Example.com:80' -> 'example.com')."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def cross_site_reason(scope: Scope) -> str | None:
    """Why a state-changing request looks cross-site (None when it does not)."""
    # Browsers set Sec-Fetch-Site themselves (a page cannot forge it): when present it decides, so a
    # proxy that rewrites Host does not break the dashboard. Older browsers: compare Origin with Host.
    fetch_site = _header(scope, b"sec-fetch-site")
    if fetch_site is not None:
        return None if fetch_site.lower() in _SAME_SITE_FETCH else f"Sec-Fetch-Site: {fetch_site[:40]}"
    origin = _header(scope, b"origin")
    if origin is None:
        return None
    host = (_header(scope, b"host") or "").lower()
    parts = urlsplit(origin.strip())
    if origin.strip().lower() == "null" or parts.netloc.lower() != host or parts.scheme not in ("http", "https"):
        return f"Origin: {origin[:100]}"
    return None


async def _refuse(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Security headers on every response; Host allow-list (if given) and CSRF check before the app sees a request."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None = None, csrf: bool = True):
        self.app = app
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts) if allowed_hosts is not None else None
        self.csrf = csrf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = DOCS_POLICY if scope.get("path") in DOCS_PATHS else CONTENT_SECURITY_POLICY
        extra = [(b"content-security-policy", policy.encode()), *SECURITY_HEADERS]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {key.lower() for key, _ in message.get("headers", ())}
                message = {**message, "headers": [*message.get("headers", ()),
                                                  *((k, v) for k, v in extra if k not in present)]}
            await send(message)

        if self.allowed_hosts is not None:
            name = host_name(_header(scope, b"host") or "")
            if name not in self.allowed_hosts:
                # 421 Misdirected Request: this server is not the one that name belongs to (DNS rebinding).
                await _refuse(send_with_headers, 421, f"this server does not answer to the host name {name[:100]!r}; "
                              "open it as http://127.0.0.1:PORT/ (or the address it was started on)", [])
                return
        if self.csrf and scope.get("method") in STATE_CHANGING:
            reason = cross_site_reason(scope)
            if reason is not None:
                await _refuse(send_with_headers, 403, f"cross-site request refused ({reason}): state-changing "
                              "requests must come from this service's own pages or from a non-browser client", [])
                return
        await self.app(scope, receive, send_with_headers)


def install_guard(app, allowed_hosts: Iterable[str] | None = None, csrf: bool = True) -> None:
    """Put GuardMiddleware outside everything else of a Starlette/FastAPI app, the 500 handler included
    (`add_middleware` would put it inside, and a 500 would leave without the headers)."""
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: GuardMiddleware(build(), allowed_hosts, csrf)
