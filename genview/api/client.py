"""A Python client of the genview job service (httpx); the `genview submit/jobs/status/cancel` verbs use it.

    from genview.api.client import GenViewClient

    with GenViewClient("http://gpu-box:8000", token="...") as client:
        job = client.submit({"source": "imagenet/train", "model": "icgan", "weights": "ckpt/icgan", "k": 10})
        job = client.wait(job.id)
        print(job.state, job.progress.views_written)
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator, Mapping

import httpx

from genview.api.schemas import TERMINAL, JobList, JobPublic, JobState, ModelList

DEFAULT_SERVER = "http://127.0.0.1:8000"


class GenViewAPIError(RuntimeError):
    """The service refused a request; carries the HTTP status and the server's detail."""

    def __init__(self, status_code: int, detail: Any, method: str, url: str):
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.url = url
        super().__init__(f"{method} {url} -> {status_code}: {format_detail(detail)}")


class AuthError(GenViewAPIError):
    """401: no token, or a token the server does not know."""


class ForbiddenError(GenViewAPIError):
    """403: a path or URL outside the token's roots."""


class NotFoundError(GenViewAPIError):
    """404: no such job (or not the caller's)."""


class ConflictError(GenViewAPIError):
    """409: the job already ended, or an id / idempotency key was reused with another spec."""


class SpecError(GenViewAPIError):
    """422: an invalid spec; `detail` names each field and why."""


class TooManyJobsError(GenViewAPIError):
    """429: the token has its maximum of jobs queued or running."""


class WaitTimeout(TimeoutError):
    """`wait` gave up before the job ended."""


_ERRORS = {401: AuthError, 403: ForbiddenError, 404: NotFoundError, 409: ConflictError, 422: SpecError, 429: TooManyJobsError}


def format_detail(detail: Any) -> str:
    """Render a FastAPI error detail (a string, or a list of {loc, msg}) on one line per problem."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path", "header")]
                parts.append(f"{'.'.join(loc) or 'request'}: {item.get('msg')}")
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


class GenViewClient:
    """Talks to a genview service at `server` with a bearer `token` (default: $GENVIEW_TOKEN)."""

    def __init__(self, server: str | None = None, token: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None):
        self.server = (server or os.environ.get("GENVIEW_SERVER") or DEFAULT_SERVER).rstrip("/")
        token = token if token is not None else os.environ.get("GENVIEW_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout, transport=transport)

    # -- plumbing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> "GenViewClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ConnectionError(f"cannot reach the genview service at {self.server}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text or response.reason_phrase
            cls = _ERRORS.get(response.status_code, GenViewAPIError)
            raise cls(response.status_code, detail, method, str(response.request.url))
        return response

    # -- API ---------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """GET /healthz."""
        return self._request("GET", "/healthz").json()

    def models(self) -> list[str]:
        """Names of the models jobs may use."""
        return [m.name for m in ModelList.model_validate(self._request("GET", "/v1/models").json()).models]

    def submit(self, spec: Mapping[str, Any] | Any, job_id: str | None = None, idempotency_key: str | None = None) -> JobPublic:
        """Submit a job spec (dict or GenerateSpec); the same job_id / key twice returns the same job."""
        body = dict(spec.model_dump(exclude_none=True) if hasattr(spec, "model_dump") else spec)
        if job_id is not None:
            body["id"] = job_id
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return JobPublic.model_validate(self._request("POST", "/v1/jobs", json=body, headers=headers).json())

    def get(self, job_id: str) -> JobPublic:
        """A job's state and progress."""
        return JobPublic.model_validate(self._request("GET", f"/v1/jobs/{job_id}").json())

    def list(self, state: JobState | str | None = None, limit: int = 50, offset: int = 0,
             cursor: str | None = None) -> JobList:
        """One page of your jobs, newest first (`cursor`: the previous page's next_cursor)."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        else:
            params["offset"] = offset
        if state is not None:
            params["state"] = JobState(state).value
        return JobList.model_validate(self._request("GET", "/v1/jobs", params=params).json())

    def iter_jobs(self, state: JobState | str | None = None, page_size: int = 100) -> Iterator[JobPublic]:
        """Every job of yours, following keyset pages."""
        page = self.list(state, limit=page_size)
        yield from page.items
        while page.next_cursor is not None:
            page = self.list(state, limit=page_size, cursor=page.next_cursor)
            yield from page.items

    def cancel(self, job_id: str) -> JobPublic:
        """Cancel a job; done shards stay in the store."""
        return JobPublic.model_validate(self._request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def logs(self, job_id: str, tail: int = 200) -> str:
        """The last `tail` lines of a job's log."""
        return self._request("GET", f"/v1/jobs/{job_id}/logs", params={"tail": tail}).text

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 2.0,
             on_update: Callable[[JobPublic], None] | None = None) -> JobPublic:
        """Poll until the job ends (succeeded, failed or cancelled) and return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_update is not None:
                on_update(job)
            if job.state.value in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} still {job.state.value} after {timeout} s")
            time.sleep(poll)
