"""Bearer-token authentication and the path policy applied to every submitted spec."""

from __future__ import annotations

import hmac
import os
import posixpath
from typing import Any

from fastapi import HTTPException, status

from genview.api.paths import PathInvalid, PathRefused, is_inside, resolve, split_url
from genview.api.schemas import JobCreate
from genview.api.settings import Principal, Settings
from genview.generator.registry import get_declaration, path_params
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


def _check_exists(resolved: str, given: str, field: str, hint: str = "") -> None:
    """422 when a resolved local path is missing (URLs are checked by the worker when it reads them)."""
    if split_url(resolved) is None and not os.path.exists(resolved):
        raise _invalid(field, f"{given!r} does not exist{hint}")


def _resolve_path_params(body: JobCreate, roots: list[str], settings: Settings) -> dict[str, Any]:
    """The params with every path-valued one (as the model declares them) resolved under `roots`."""
    params = dict(body.params)
    for name in path_params(body.model):
        if name in params and params[name] is not None:
            field = f"params.{name}"
            params[name] = _check(str(params[name]), field, roots, settings, "source or model")
            _check_exists(params[name], body.params[name], field)
    return params


def _limited(body: JobCreate, settings: Settings) -> dict[str, Any]:
    """workers / io_threads / threads / batch_size: the service's default when not given, 422 above its cap."""
    chosen: dict[str, Any] = {}
    for field, default, cap in (
        ("workers", settings.default_workers, settings.max_workers),
        ("io_threads", settings.default_io_threads, settings.max_io_threads),
        ("threads", settings.default_threads, settings.max_threads),
        ("batch_size", settings.default_batch_size, settings.max_batch_size),
    ):
        value = getattr(body, field) if field in body.model_fields_set else None
        if value is None:
            chosen[field] = default if (default is None or cap is None) else min(default, cap)
            continue
        if cap is None or cap < 1:
            raise _invalid(field, f"this service does not take {field} from requests (its operator sets it)")
        if value > cap:
            raise _invalid(field, f"must be at most {cap} on this service (its operator's GENVIEW_MAX_{field.upper()})")
        chosen[field] = value
    return chosen


def job_cost_per_source(body: GenerateSpec) -> tuple[int, int]:
    """Return (views x candidates x pixels per source image, the side counted): k x best_of x side^2.

    The side is the larger of view_size (stored views are resized to it) and the side the model makes
    with the job's params (its declaration's nominal side, or its size param such as unCLIP's image_size).
    """
    side = max(body.view_size or 0, get_declaration(body.model).output_side(body.params))
    return body.k * body.best_of * side * side, side


def _check_cost(body: GenerateSpec, settings: Settings) -> None:
    """Refuse a job whose views x candidates x pixels per source exceed the operator's cap (422)."""
    cost, side = job_cost_per_source(body)
    if cost > settings.max_cost_per_source:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"job cost {cost:,} views x candidates x pixels per source image (k {body.k} x best_of "
            f"{body.best_of} x {side}x{side} px) is above this service's cap of {settings.max_cost_per_source:,} "
            "(GENVIEW_MAX_COST_PER_SOURCE); lower k, best_of or view_size",
        )


def authorize_spec(body: JobCreate, principal: Principal, settings: Settings) -> GenerateSpec:
    """Return the spec to run with every path resolved, or raise 403 (not yours) / 422 (malformed).

    Every path the spec can carry is resolved here, before the job is accepted: source, out, weights,
    encoder_weights and each param the model declares as a path (registry.path_params). The worker
    checks them again before it opens anything.
    """
    read_roots = principal.source_roots
    weight_roots = settings.read_roots(principal)
    limits = _limited(body, settings)
    _check_cost(body, settings)
    source = _check(body.source, "source", read_roots, settings, "source")
    _check_exists(source, body.source, "source")
    weights = _check(body.weights, "weights", weight_roots, settings, "source or model")
    _check_exists(weights, body.weights, "weights", " (hub ids are not accepted here: put the checkpoint under a model root)")
    encoder = None
    if body.encoder_weights is not None:
        if "encoder_weights" not in path_params(body.model):
            raise _invalid("encoder_weights", f"model {body.model} takes no separate encoder weights")
        if body.params.get("encoder_weights") is not None:
            raise _invalid("encoder_weights", "give it once: as encoder_weights or as params.encoder_weights, not both")
        encoder = _check(body.encoder_weights, "encoder_weights", weight_roots, settings, "source or model")
        _check_exists(encoder, body.encoder_weights, "encoder_weights")
    params = _resolve_path_params(body, weight_roots, settings)
    if body.out is not None:
        out = _check(body.out, "out", principal.output_roots, settings, "output")
    else:
        out = _check(_default_out(source, body.model, body.k, principal.output_roots[0]), "out",
                     principal.output_roots, settings, "output")
    if split_url(out) is None:
        shown = repr(body.out) if body.out is not None else "the default store folder"
        if is_inside(out, settings.resolved_jobs_dir):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"out: {shown} is inside the service's job folder")
        if os.path.exists(out) and not os.path.isdir(out):
            raise _invalid("out", f"{shown} exists and is not a folder")
        if posixpath.normpath(out) == posixpath.normpath(source):
            raise _invalid("out", "must differ from source")
    return body.to_spec(source=source, weights=weights, encoder_weights=encoder, out=out, params=params, **limits)
