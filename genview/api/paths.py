"""Path policy: which local paths and URLs a token may read or write (no web imports: the worker uses it too)."""

from __future__ import annotations

import os
import re
from typing import Iterable, Sequence
from urllib.parse import unquote, urlsplit

#: scheme://rest; a scheme is a letter then letters, digits, + . - (RFC 3986).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.DOTALL)


class PathRefused(PermissionError):
    """A path or URL that is well formed but outside the caller's roots (HTTP 403)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class PathInvalid(ValueError):
    """A path or URL that is malformed (HTTP 422)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def split_url(value: str) -> tuple[str, str] | None:
    """Return (scheme lowercased, rest) for scheme://rest, None for a plain path."""
    match = _URL.match(value)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2)


def _check_text(value: str, field: str) -> None:
    """Refuse empty strings and control characters (they never name a real file and confuse logs)."""
    if not value or not value.strip():
        raise PathInvalid(field, "must not be empty")
    if any(ord(ch) < 32 for ch in value):
        raise PathInvalid(field, "contains control characters")


def canonical_root(root: str, base_dir: str) -> str:
    """Return a root in the form paths are compared against: a real local path, or a URL prefix."""
    parts = split_url(root)
    if parts is not None and parts[0] != "file":
        scheme, rest = parts
        return f"{scheme}://{rest.rstrip('/')}"
    local = parts[1] if parts is not None else root
    local = os.path.expanduser(local)
    if not os.path.isabs(local):
        local = os.path.join(base_dir, local)
    return os.path.realpath(local)


def _under(path: str, root: str) -> bool:
    """True when `path` is `root` or inside it (both canonical, same kind)."""
    if path == root:
        return True
    return path.startswith(root.rstrip("/") + "/")


def _resolve_url(scheme: str, rest: str, value: str, field: str, roots: Sequence[str], what: str) -> str:
    """Check a URL against the URL roots; refuse traversal and anything not under a root."""
    if not rest or rest.startswith("/") and scheme not in ("memory",):
        raise PathInvalid(field, f"malformed URL {value!r}: no host or bucket after {scheme}://")
    try:
        split = urlsplit(f"{scheme}://{rest}")
    except ValueError as exc:
        raise PathInvalid(field, f"malformed URL {value!r}: {exc}") from None
    if not split.netloc and scheme not in ("memory",):
        raise PathInvalid(field, f"malformed URL {value!r}: no host or bucket after {scheme}://")
    segments = [unquote(seg) for seg in rest.split("/")]
    if any(seg in ("..", ".") for seg in segments):
        raise PathRefused(field, f"'..' and '.' segments are not allowed in URLs ({value!r})")
    url = f"{scheme}://{rest}"
    url_roots = [r for r in roots if split_url(r) is not None]
    for root in url_roots:
        if _under(url.rstrip("/"), root):
            return url
    allowed = ", ".join(url_roots) or "none"
    raise PathRefused(field, f"{scheme}:// URL {value!r} is outside your {what} roots (allowed URL roots: {allowed})")


def resolve(value: str, *, field: str, roots: Sequence[str], base_dir: str, what: str) -> str:
    """Return the canonical form of `value` if it lies under one of `roots`, else raise.

    Local paths: relative ones are taken from `base_dir`; any '..' component is refused outright;
    the real path (symlinks resolved) must stay inside a root's real path. URLs: the scheme and
    prefix must match a URL root. Chained fsspec URLs (a::b) are refused.
    """
    _check_text(value, field)
    if "::" in value:
        raise PathRefused(field, f"chained fsspec URLs are not allowed ({value!r})")
    parts = split_url(value)
    if parts is None and "://" in value:
        raise PathInvalid(field, f"malformed URL {value!r}: the scheme must be letters, e.g. s3://bucket/key")
    if parts is not None and parts[0] != "file":
        return _resolve_url(parts[0], parts[1], value, field, roots, what)
    local = parts[1] if parts is not None else value
    if parts is not None and not local.startswith("/"):
        raise PathInvalid(field, f"malformed URL {value!r}: file:// URLs need an absolute path (file:///...)")
    if ".." in local.replace("\\", "/").split("/"):
        raise PathRefused(field, f"'..' is not allowed in paths ({value!r})")
    local = os.path.expanduser(local)
    absolute = os.path.normpath(local if os.path.isabs(local) else os.path.join(base_dir, local))
    real = os.path.realpath(absolute)
    local_roots = [r for r in roots if split_url(r) is None]
    if any(_under(real, root) for root in local_roots):
        return real
    # The messages quote only what the client sent: never the roots, the service folder or a
    # symlink's target (they describe the host, and the client may not know them).
    if any(_under(absolute, root) for root in local_roots):
        raise PathRefused(field, f"{value!r} leads through a symbolic link to outside your {what} roots")
    raise PathRefused(field, f"{value!r} is outside your {what} roots")


def first_outside(uris: Iterable[str], roots: Sequence[str], base_dir: str) -> tuple[str, str] | None:
    """Return (uri, reason) for the first listed source outside `roots`, or None when all are inside."""
    for uri in uris:
        try:
            resolve(str(uri), field="source", roots=roots, base_dir=base_dir, what="source")
        except (PathRefused, PathInvalid) as exc:
            return str(uri), exc.reason
    return None


def is_inside(path: str, directory: str) -> bool:
    """True when canonical local `path` is `directory` or below it."""
    return _under(os.path.realpath(path), os.path.realpath(directory))
