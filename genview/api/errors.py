"""Error responses that can always be encoded: a malformed body gets a 4xx naming the field, never a 500."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

#: How much of a rejected value is echoed back: enough to recognise it, never a whole body.
_MAX_DEPTH = 4
_MAX_ITEMS = 10
_MAX_TEXT = 200


def safe_text(text: str, limit: int = _MAX_TEXT) -> str:
    """`text` made encodable (lone surrogates escaped) and shortened."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "..."


def safe_value(value: Any, depth: int = 0) -> Any:
    """A JSON-encodable, bounded copy of a rejected input: non-finite numbers become strings, deep nesting '...'."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return safe_text(value)
    if depth >= _MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_ITEMS]
        return {safe_text(str(key)): safe_value(item, depth + 1) for key, item in items}
    if isinstance(value, (list, tuple)):
        return [safe_value(item, depth + 1) for item in list(value)[:_MAX_ITEMS]]
    return safe_text(repr(value))


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's 422 detail shape (loc, msg, type, input) with every part made safe to encode."""
    detail = []
    for error in errors:
        item = {
            "loc": [part if isinstance(part, int) else safe_text(str(part)) for part in error.get("loc", ())],
            "msg": safe_text(str(error.get("msg", "")), 1000),
            "type": safe_text(str(error.get("type", "value_error"))),
        }
        if "input" in error:
            item["input"] = safe_value(error["input"])
        detail.append(item)
    return detail


async def _request_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each bad field; the default handler fails (500) on NaN, Infinity and very deep input."""
    return JSONResponse(status_code=422, content={"detail": validation_errors(exc.errors())})


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that keep malformed requests 4xx."""
    app.add_exception_handler(RequestValidationError, _request_validation_error)
