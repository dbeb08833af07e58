"""`genview browse STORE`: the store pages alone, read-only, for a local or s3:// store (no job service)."""

from __future__ import annotations

import contextlib
from typing import Annotated, AsyncIterator

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from genview import __version__
from genview.datastore.store import StoreError
from genview.web.guards import allowed_hosts_for, install_guard
from genview.web.rendering import render, static_response
from genview.web.store_view import EmptyShard, PAGE_SIZES, SORTS, GridQuery, QueryError, StoreView

#: Responses of a read-only browser are never stored by proxies; images of done shards never change.
IMAGE_CACHE = "private, max-age=86400, immutable"


def store_page_context(view: StoreView, params: dict[str, str]) -> dict:
    """The template context of a store page; a bad query becomes a 422, a missing store an error line."""
    try:
        query = GridQuery.from_params(params)
    except QueryError as exc:
        raise HTTPException(422, detail=[{"loc": ["query", exc.field], "msg": str(exc), "type": "value_error"}]) from None
    try:
        return {"ov": view.overview(), "grid": view.grid(query), "error": None, "sorts": SORTS, "page_sizes": PAGE_SIZES}
    except (StoreError, FileNotFoundError) as exc:
        return {"ov": None, "grid": None, "error": str(exc), "sorts": SORTS, "page_sizes": PAGE_SIZES}


def _as_is(value):
    """`genview browse` shows paths as they are: its user named the store on their own machine."""
    return value


def render_store_page(url: str, context: dict) -> str:
    """The HTML of `genview browse`'s store page for `context` (from `store_page_context`)."""
    return render("store_page.html", title=url, page_kind="store", dashboard=False, static_base="/static",
                  home_url="/", base_url="/", img_url=lambda shard, member: f"/img/{shard}/{member}",
                  shown_path=_as_is, shown_text=_as_is, **context)


def create_browse_app(url: str, bind_host: str = "127.0.0.1") -> FastAPI:
    """A read-only app serving the pages of the store at `url` at / and its images at /img/SHARD/MEMBER.

    It has no login, so it answers only to loopback names and `bind_host` (DNS rebinding).
    """
    view = StoreView(url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Read the manifest, index the first page's shards and compile the templates before the
        # first visitor: uvicorn accepts connections only after this.
        await run_in_threadpool(render_store_page, url, store_page_context(view, {}))
        yield


    app = FastAPI(title="genview store browser", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    async def store_page(request: Request) -> HTMLResponse:
        context = await run_in_threadpool(store_page_context, view, dict(request.query_params))
        return HTMLResponse(await run_in_threadpool(render_store_page, url, context))

    @app.get("/img/{shard}/{member}")
    async def image(shard: Annotated[int, Path(ge=0)], member: Annotated[str, Path(max_length=255)]) -> Response:
        try:
            data, mime = await run_in_threadpool(view.image, shard, member)
        except EmptyShard as exc:
            raise HTTPException(404, detail=exc.message) from None
        except KeyError:
            raise HTTPException(404, detail=f"shard {shard} has no member {member!r}") from None
        return Response(data, media_type=mime, headers={"Cache-Control": IMAGE_CACHE})

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        return static_response(name)

    install_guard(app, allowed_hosts=allowed_hosts_for(bind_host))
    return app
