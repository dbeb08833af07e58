"""The job dashboard inside `genview serve`: page shells at /, /jobs/ID, /jobs/ID/store and their fragments.

Page shells need no token: they hold no data. Their JavaScript fetches the fragments under /ui with
the tab's bearer token; fragments are server-rendered and autoescaped. Images of a job's store are
served at /ui/img/... under a URL signed by the fragment that showed them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from genview.api import service
from genview.api.db import Job
from genview.api.deps import ContextDep, PrincipalDep
from genview.api.schemas import TERMINAL, JobCreate
from genview.api.security import _limited
from genview.api.settings import Settings
from genview.datastore.store import Store, StoreError
from genview.web import signing
from genview.web.browse import IMAGE_CACHE, store_page_context
from genview.web.rendering import render, static_response
from genview.web.store_view import EmptyShard, StoreViews

JobId = Annotated[str, Path(min_length=1, max_length=64)]
LOG_LINES = 30
#: Spec fields the form leaves out: the service decides where jobs run.
_NOT_IN_FORM = ("ray_address",)
#: Spec fields a service may refuse from requests (its operator's caps, genview.api.security._limited).
_OPERATOR_CAPPED = ("workers", "io_threads", "threads", "batch_size")


def _kind(prop: dict[str, Any]) -> str:
    """The JSON type of a schema property, looking through Optional (anyOf [..., null])."""
    if "type" in prop:
        return prop["type"]
    types = [option.get("type") for option in prop.get("anyOf", []) if option.get("type") != "null"]
    return types[0] if types else "string"


def _bound(prop: dict[str, Any], name: str) -> Any:
    for option in [prop, *prop.get("anyOf", [])]:
        if name in option:
            return option[name]
    return None


def refused_fields(settings: Settings) -> set[str]:
    """Spec fields this service refuses from requests (its operator sets them): asked of the check itself."""
    refused = set()
    for name in _OPERATOR_CAPPED:
        probe = JobCreate.model_construct(_fields_set={name}, **{name: 1})
        try:
            _limited(probe, settings)
        except HTTPException:
            refused.add(name)
    return refused


def recipe_fields() -> set[str]:
    """Spec fields every recipe fills (model, k, ...): not required in the form, since a recipe may stand for them."""
    from genview.recipes import RECIPES

    return set.intersection(*(set(recipe.values()) for recipe in RECIPES.values()))


def form_fields(settings: Settings | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The submit form's fields from the JSON schema of POST /v1/jobs (one source of truth), and the model names.

    Left out: what the service decides (ray_address) and what this service refuses from requests.
    """
    from genview.api.schemas import enabled_models

    schema = JobCreate.model_json_schema()
    schema_required = set(schema.get("required", []))
    required = schema_required - recipe_fields()
    left_out = set(_NOT_IN_FORM) | (refused_fields(settings) if settings is not None else set())
    fields = []
    for name, prop in schema["properties"].items():
        if name in left_out:
            continue
        kind = _kind(prop)
        default = prop.get("default")
        placeholder = "" if default is None or kind == "object" else (
            ",".join(map(str, default)) if isinstance(default, list) else str(default))
        if kind == "array" and not placeholder:
            placeholder = "comma-separated, e.g. 0.2,0.4"
        fields.append({
            "name": name, "kind": kind, "required": name in required, "default": default,
            "description": prop.get("description", "") + (
                " (or leave it empty and name a recipe)" if name in schema_required and name not in required else ""),
            "choices": prop.get("enum"),
            "placeholder": placeholder, "minimum": _bound(prop, "minimum"), "maximum": _bound(prop, "maximum"),
            "list_id": "model-names" if name == "model" else None,
        })
    # Required fields first, in schema order: what must be filled is at the top.
    fields.sort(key=lambda field: not field["required"])
    return fields, enabled_models()


def _random_weights(out: str | None) -> bool | None:
    """Whether the job's store records RANDOM weights (None: no store header yet, or unreadable)."""
    if not out:
        return None
    try:
        return bool(Store(out).read_header().get("random_weights"))
    except (StoreError, OSError, ValueError):
        return None


def format_eta(seconds: float | None) -> str:
    """Seconds as '1 h 02 min', '3 min 05 s' or '12 s'; '–' when unknown."""
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def create_dashboard_router(tokens: list[str]) -> APIRouter:
    """The dashboard's routes; image URLs are signed with a key derived from the service's tokens."""
    router = APIRouter(include_in_schema=False)
    key = signing.signing_key(tokens)
    stores = StoreViews()

    def shell(title: str, kind: str, **context: Any) -> HTMLResponse:
        html = render("dashboard.html", title=title, page_kind=kind, kind=kind, dashboard=True, static_base="/static",
                      home_url="/", **context)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.get("/", response_class=HTMLResponse)
    async def home(ctx: ContextDep) -> HTMLResponse:
        fields, models = form_fields(ctx.settings)
        return shell("jobs", "home", fields=fields, models=models)

    @router.get("/jobs/{job_id}", response_class=HTMLResponse)
    async def job_page(job_id: JobId) -> HTMLResponse:
        return shell(f"job {job_id}", "job", job_id=job_id)

    @router.get("/jobs/{job_id}/store", response_class=HTMLResponse)
    async def store_page(job_id: JobId) -> HTMLResponse:
        return shell(f"store of job {job_id}", "store", job_id=job_id)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        return static_response(name)

    # -- fragments (bearer token) ------------------------------------------------------------
    def _jobs_fragment(ctx, principal) -> str:
        with ctx.sessions() as session:
            jobs, total = service.list_jobs(session, principal, None, 100, 0)
            items = [service.to_public(ctx, job) for job in jobs]
        return render("jobs_fragment.html", jobs=items, total=total, eta=format_eta)

    @router.get("/ui/jobs", response_class=HTMLResponse)
    def jobs_fragment(ctx: ContextDep, principal: PrincipalDep) -> HTMLResponse:
        return HTMLResponse(_jobs_fragment(ctx, principal), headers={"Cache-Control": "no-store"})

    @router.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
    def job_fragment(job_id: JobId, ctx: ContextDep, principal: PrincipalDep) -> HTMLResponse:
        with ctx.sessions() as session:
            job = service.get_job(session, principal, job_id)
            public = service.to_public(ctx, job)
        try:
            log_text = ctx.executor.logs(job, LOG_LINES) if (job.job_dir or job.external_id) else ""
        except Exception as exc:  # a Ray cluster that is away must not hide the rest of the page
            log_text = f"(log unavailable: {exc})"
        html = render("job_fragment.html", job=public, terminal=public.state.value in TERMINAL, eta=format_eta,
                      spec_text=json.dumps(public.spec, indent=2, sort_keys=True), log_text=ctx.paths.text(log_text),
                      random_weights=_random_weights(job.out))
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.get("/ui/jobs/{job_id}/store", response_class=HTMLResponse)
    def store_fragment(job_id: JobId, request: Request, ctx: ContextDep, principal: PrincipalDep) -> HTMLResponse:
        with ctx.sessions() as session:
            job = service.get_job(session, principal, job_id)
            out, internal_id = job.out, job.id
        context = store_page_context(stores.get(out), dict(request.query_params))
        if context["error"]:
            context["error"] = ctx.paths.text(context["error"])

        def img_url(shard: int, member: str) -> str:
            # The service's own job id (client-chosen ids are per owner, not unique): the signature vouches for it.
            path = f"/ui/img/{quote(internal_id, safe='')}/{int(shard)}/{quote(member, safe='')}"
            return f"{path}?{signing.sign(key, path)}"

        html = render("store_body.html", base_url=f"/jobs/{quote(job_id, safe='')}/store", img_url=img_url,
                      shown_path=ctx.paths.path, shown_text=ctx.paths.text, **context)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @router.get("/ui/img/{job_id}/{shard}/{member}")
    def image(job_id: JobId, shard: Annotated[int, Path(ge=0)], member: Annotated[str, Path(max_length=255)],
              ctx: ContextDep, exp: Annotated[int, Query()], sig: Annotated[str, Query(max_length=128)]) -> Response:
        path = f"/ui/img/{quote(job_id, safe='')}/{shard}/{quote(member, safe='')}"
        if not signing.verify(key, path, exp, sig):
            raise HTTPException(403, detail="image URL signature invalid or expired: reload the store page")
        with ctx.sessions() as session:
            job = session.get(Job, job_id)
            out = job.out if job is not None else None
        if out is None:
            raise HTTPException(404, detail=f"no job {job_id!r}")
        try:
            data, mime = stores.get(out).image(shard, member)
        except EmptyShard as exc:
            raise HTTPException(404, detail=exc.message) from None
        except KeyError:
            raise HTTPException(404, detail=f"shard {shard} has no member {member!r}") from None
        return Response(data, media_type=mime, headers={"Cache-Control": IMAGE_CACHE})

    return router
