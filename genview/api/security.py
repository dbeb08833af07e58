"""Bearer-token authentication and the path policy applied to every submitted spec."""

from __future__ import annotations

import hmac
import os
import posixpath

from fastapi import HTTPException, status

from genview.api.paths import PathInvalid, PathRefused, is_inside, resolve, split_url
from genview.api.schemas import JobCreate
from genview.api.settings import Principal, Settings
from genview.pipeline.spec import GenerateSpec


class Authenticator:
    """Maps bearer tokens to principals (resolved once at start-up)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._local = settings.local_principal() if settings.auth_disabled else None
        # Resolved once: roots are canonicalised (realpath) at start-up, not per request.
        self._principals = {token: settings.principal(token, policy) for token, policy in settings.tokens.items()}

    def __call__(self, token: str | None) -> Principal:
        """Return the caller's principal or raise 401."""
        if self._local is not None:
            return self._local
        principal = None
        if token:
            for known, candidate in self._principals.items():
                # Constant-time compare against every token: timing reveals nothing about them.
                if hmac.compare_digest(known.encode(), token.encode()):
                    principal = candidate
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing bearer token" if not token else "invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return principal


def _invalid(field: str, message: str) -> HTTPException:
    """A 422 in FastAPI's validation-error shape, naming the field."""
    return HTTPException(
        422,
        detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}],
    )


def _check(value: str, field: str, roots: list[str], settings: Settings, what: str) -> str:
    """Resolve one path, turning policy errors into 403 and malformed input into 422."""
    try:
        return resolve(value, field=field, roots=roots, base_dir=settings.base_dir, what=what)
    except PathRefused as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from None
    except PathInvalid as exc:
        raise _invalid(field, exc.reason) from None


def _default_out(source: str, model: str, k: int, root: str) -> str:
    """SOURCE-MODEL-kK under the caller's first output root (as `genview generate` names it)."""
    from genview.cli.generate import default_out

    name = default_out(source, model, k)
    return f"{root.rstrip('/')}/{name}" if split_url(root) else os.path.join(root, name)


def authorize_spec(body: JobCreate, principal: Principal, settings: Settings) -> GenerateSpec:
    """Return the spec to run with every path resolved, or raise 403 (not yours) / 422 (malformed)."""
    read_roots = principal.source_roots
    weight_roots = settings.read_roots(principal)
    source = _check(body.source, "source", read_roots, settings, "source")
    if split_url(source) is None and not os.path.exists(source):
        raise _invalid("source", f"{body.source!r} does not exist")
    weights = _check(body.weights, "weights", weight_roots, settings, "source or model")
    if split_url(weights) is None and not os.path.exists(weights):
        raise _invalid("weights", f"{body.weights!r} does not exist (hub ids are not accepted here: put the checkpoint under a model root)")
    encoder = None
    if body.encoder_weights is not None:
        encoder = _check(body.encoder_weights, "encoder_weights", weight_roots, settings, "source or model")
        if split_url(encoder) is None and not os.path.exists(encoder):
            raise _invalid("encoder_weights", f"{body.encoder_weights!r} does not exist")
    if body.out is not None:
        out = _check(body.out, "out", principal.output_roots, settings, "output")
    else:
        out = _check(_default_out(source, body.model, body.k, principal.output_roots[0]), "out",
                     principal.output_roots, settings, "output")
    if split_url(out) is None:
        if is_inside(out, settings.resolved_jobs_dir):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"out: {out} is the service's job folder")
        if os.path.exists(out) and not os.path.isdir(out):
            raise _invalid("out", f"{body.out!r} exists and is not a folder")
        if posixpath.normpath(out) == posixpath.normpath(source):
            raise _invalid("out", "must differ from source")
    return body.to_spec(source=source, weights=weights, encoder_weights=encoder, out=out)
