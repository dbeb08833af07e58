"""The Jinja2 environment of the web pages: autoescaped, so every label, file name and error is text."""

from __future__ import annotations

import functools
import posixpath
from importlib import resources
from typing import Any

import jinja2

STATIC_DIR = resources.files("genview.web") / "static"


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The shared template environment (templates ship inside the package)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("genview.web", "templates"),
        autoescape=True,  # always, whatever the template's name: user text must never become markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["basename"] = lambda uri: posixpath.basename(str(uri or "").rstrip("/")) or str(uri or "")
    return env


def render(template: str, **context: Any) -> str:
    """Render one template with `context`."""
    return environment().get_template(template).render(**context)


def static_response(name: str):
    """The static file `name` as a response (404 for any other name): the route both web apps serve."""
    from fastapi import HTTPException, Response

    found = static_file(name)
    if found is None:
        raise HTTPException(404, detail=f"no static file {name!r}")
    return Response(found[0], media_type=found[1])


def static_file(name: str) -> tuple[bytes, str] | None:
    """A file of the static folder and its MIME type; None for anything else (no path tricks)."""
    types = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
    if name not in types:
        return None
    return (STATIC_DIR / name).read_bytes(), types[name]
