"""Interpolation of condition embeddings (Gen-SIS interpolated views): lerp and norm-keeping slerp."""

from __future__ import annotations

from typing import Sequence

import torch

#: Interpolation modes accepted by `interpolate` (and `genview generate --interpolation`).
MODES = ("slerp", "lerp")
#: The one default everywhere (this module, GenerateSpec, ViewSettings, the CLI): Gen-SIS interpolates linearly
#: (supplement 9.4 "linearly-interpolated synthetic images"); slerp is an option.
DEFAULT_MODE = "lerp"


def _alpha_column(alpha: float | Sequence[float] | torch.Tensor, rows: int) -> torch.Tensor:
    """Return alpha as a float64 [rows, 1] column (a scalar is repeated for every row)."""
    a = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1)
    if a.numel() == 1:
        a = a.expand(rows)
    if a.numel() != rows:
        raise ValueError(f"alpha has {a.numel()} values for {rows} embedding rows")
    return a.reshape(rows, 1)


def _check_pair(primary: torch.Tensor, secondary: torch.Tensor) -> None:
    if primary.ndim != 2 or primary.shape != secondary.shape:
        raise ValueError(
            f"primary and secondary embeddings must both be [N, D] with equal shapes, "
            f"got {tuple(primary.shape)} and {tuple(secondary.shape)}"
        )


def _exact_endpoints(result: torch.Tensor, primary: torch.Tensor, secondary: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Return result with rows at alpha=0 / alpha=1 replaced by the untouched primary / secondary rows."""
    result = torch.where(a == 0, primary, result)
    return torch.where(a == 1, secondary, result)


def lerp(primary: torch.Tensor, secondary: torch.Tensor, alpha: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Return (1 - alpha) * primary + alpha * secondary row-wise; alpha=0/1 give the inputs exactly."""
    _check_pair(primary, secondary)
    a = _alpha_column(alpha, primary.shape[0]).to(primary.device)  # the engine keeps embeddings on the GPU
    p, s = primary.double(), secondary.double()
    out = ((1 - a) * p + a * s).to(primary.dtype)
    return _exact_endpoints(out, primary, secondary, a)


def slerp(
    primary: torch.Tensor,
    secondary: torch.Tensor,
    alpha: float | Sequence[float] | torch.Tensor,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Spherical interpolation of directions with linearly interpolated norms, row-wise.

    Interpolating the unit directions on the great circle and the norms linearly keeps the
    norm when both inputs have equal norm (a plain slerp of unnormalised vectors does not).
    Near-parallel (or zero) rows fall back to a normalised lerp of the directions, where the
    slerp formula divides by sin(omega) ~ 0. alpha=0 / alpha=1 return the inputs exactly.
    """
    _check_pair(primary, secondary)
    a = _alpha_column(alpha, primary.shape[0]).to(primary.device)
    p, s = primary.double(), secondary.double()
    norm_p = p.norm(dim=1, keepdim=True)
    norm_s = s.norm(dim=1, keepdim=True)
    dir_p = p / norm_p.clamp_min(1e-30)
    dir_s = s / norm_s.clamp_min(1e-30)
    cos = (dir_p * dir_s).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    safe_sin = torch.where(sin.abs() < eps, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - a) * omega) * dir_p + torch.sin(a * omega) * dir_s) / safe_sin
    linear = (1 - a) * dir_p + a * dir_s
    linear = linear / linear.norm(dim=1, keepdim=True).clamp_min(1e-30)
    degenerate = (sin.abs() < eps) | (norm_p == 0) | (norm_s == 0)
    direction = torch.where(degenerate, linear, spherical)
    norm = (1 - a) * norm_p + a * norm_s
    out = (direction * norm).to(primary.dtype)
    return _exact_endpoints(out, primary, secondary, a)


def interpolate(
    primary: torch.Tensor,
    secondary: torch.Tensor,
    alpha: float | Sequence[float] | torch.Tensor,
    mode: str = DEFAULT_MODE,
) -> torch.Tensor:
    """Interpolate embedding rows with `mode` ("slerp" or "lerp"); alpha is a scalar or one value per row."""
    if mode == "slerp":
        return slerp(primary, secondary, alpha)
    if mode == "lerp":
        return lerp(primary, secondary, alpha)
    raise ValueError(f"unknown interpolation mode {mode!r}; choose one of {', '.join(MODES)}")


def interpolation_rows(
    primary: torch.Tensor,
    secondary: torch.Tensor,
    alphas: Sequence[float],
    mode: str = DEFAULT_MODE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ([N*A, D] embeddings, [N*A] alphas) for every (source, alpha), rows ordered source-major."""
    _check_pair(primary, secondary)
    alphas = [float(x) for x in alphas]
    if not alphas:
        raise ValueError("--alphas needs at least one value")
    bad = [x for x in alphas if not 0.0 <= x <= 1.0]
    if bad:
        raise ValueError(f"--alphas must lie in [0, 1], got {bad}")
    count = len(alphas)
    row_alpha = torch.tensor(alphas, dtype=torch.float64).repeat(primary.shape[0])
    mixed = interpolate(
        primary.repeat_interleave(count, dim=0), secondary.repeat_interleave(count, dim=0), row_alpha, mode
    )
    return mixed, row_alpha.float()
