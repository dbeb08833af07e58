"""Prometheus text metrics: HTTP requests (count, latency histogram) and jobs by state."""

from __future__ import annotations

import threading
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Latency histogram bucket bounds in seconds (Prometheus client defaults).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: Any) -> str:
    """Escape a label value as the Prometheus text format requires."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: Any) -> str:
    """Render {name="value",...}."""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items()) + "}"


class RequestMetrics:
    """Thread-safe counters of requests by (method, route template, status) and latency by route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], list[float]] = {}  # bucket counts..., +Inf count, sum

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        """Record one finished request."""
        with self._lock:
            key = (method, route, code)
            self.requests[key] = self.requests.get(key, 0) + 1
            hist = self.latency.setdefault((method, route), [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    hist[i] += 1
            hist[len(BUCKETS)] += 1
            hist[len(BUCKETS) + 1] += seconds

    @staticmethod
    def _head(executor: str, version: str, jobs_help: str) -> list[str]:
        return [
            "# HELP genview_build_info genview version and executor.",
            "# TYPE genview_build_info gauge",
            f"genview_build_info{_labels(version=version, executor=executor)} 1",
            f"# HELP genview_jobs {jobs_help}",
            "# TYPE genview_jobs gauge",
        ]

    def render_owner(self, owner: str, jobs_by_state: dict[str, int], executor: str, version: str) -> str:
        """What one (non-admin) token sees: its own jobs by state, nothing about other owners or their requests."""
        lines = self._head(executor, version, "Your jobs in the database by state.")
        lines += [f"genview_jobs{_labels(owner=owner, state=state)} {count}" for state, count in sorted(jobs_by_state.items())]
        return "\n".join(lines) + "\n"

    def render(self, jobs_by_state: dict[str, int], finished: dict[str, int], executor: str, version: str) -> str:
        """The Prometheus text exposition of the whole service (admin tokens, or metrics without auth)."""
        lines = self._head(executor, version, "Jobs in the database by state.")
        lines += [f"genview_jobs{_labels(state=state)} {count}" for state, count in sorted(jobs_by_state.items())]
        lines += ["# HELP genview_jobs_finished_total Jobs this process saw end, by final state.",
                  "# TYPE genview_jobs_finished_total counter"]
        lines += [f"genview_jobs_finished_total{_labels(state=state)} {count}" for state, count in sorted(finished.items())]
        with self._lock:
            requests = sorted(self.requests.items())
            latency = sorted((key, list(hist)) for key, hist in self.latency.items())
        lines += ["# HELP genview_http_requests_total HTTP requests by method, route and status.",
                  "# TYPE genview_http_requests_total counter"]
        lines += [f"genview_http_requests_total{_labels(method=m, route=r, status=c)} {n}" for (m, r, c), n in requests]
        lines += ["# HELP genview_http_request_duration_seconds HTTP request latency.",
                  "# TYPE genview_http_request_duration_seconds histogram"]
        for (method, route), hist in latency:
            for i, bound in enumerate(BUCKETS):
                lines.append(f"genview_http_request_duration_seconds_bucket{_labels(method=method, route=route, le=bound)} {int(hist[i])}")
            count, total = int(hist[len(BUCKETS)]), hist[len(BUCKETS) + 1]
            lines.append(f"genview_http_request_duration_seconds_bucket{_labels(method=method, route=route, le='+Inf')} {count}")
            lines.append(f"genview_http_request_duration_seconds_count{_labels(method=method, route=route)} {count}")
            lines.append(f"genview_http_request_duration_seconds_sum{_labels(method=method, route=route)} {total:.6f}")
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Times every HTTP request; labels it with the matched route template, not the raw path."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(scope.get("method", ""), route_template(scope), code, time.perf_counter() - start)


def route_template(scope: Scope) -> str:
    """The matched route's path template with its router prefix, e.g. /v1/jobs/{job_id}."""
    effective = (scope.get("fastapi") or {}).get("effective_route_context")  # recent FastAPI keeps prefixes here
    route = scope.get("route")
    for candidate in (effective, route):
        template = getattr(candidate, "path_format", None)
        if template:
            return template
    return "unmatched"
