"""Signed image URLs: an <img> cannot send a bearer token, so the page that may see an image signs its URL."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Iterable

#: How long a signed image URL stays valid.
URL_LIFETIME_SECONDS = 3600


def signing_key(tokens: Iterable[str]) -> bytes:
    """A key every replica with the same tokens agrees on; random when there are no tokens (auth disabled)."""
    tokens = sorted(tokens)
    if not tokens:
        return secrets.token_bytes(32)
    return hmac.new(b"genview-web-image-urls", "\n".join(tokens).encode(), hashlib.sha256).digest()


def sign(key: bytes, path: str, now: float | None = None) -> str:
    """The query string `exp=...&sig=...` that makes `path` readable until it expires."""
    expires = int((time.time() if now is None else now) + URL_LIFETIME_SECONDS)
    signature = hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return f"exp={expires}&sig={signature}"


def verify(key: bytes, path: str, expires: int, signature: str, now: float | None = None) -> bool:
    """True when `signature` was made for `path` with `key` and has not expired."""
    if expires < (time.time() if now is None else now):
        return False
    expected = hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
