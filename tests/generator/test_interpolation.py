"""Embedding interpolation for Gen-SIS interpolated views: exact endpoints, norm-keeping slerp."""

from __future__ import annotations

import math

import pytest
import torch

from genview.generator.interpolation import interpolate, interpolation_rows, lerp, slerp


def _pair(n: int = 6, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen) * 3.1, torch.randn(n, d, generator=gen) * 0.7


@pytest.mark.parametrize("fn", [lerp, slerp])
def test_endpoints_are_exactly_the_inputs(fn):
    a, b = _pair()
    assert torch.equal(fn(a, b, 0.0), a)
    assert torch.equal(fn(a, b, 1.0), b)
    # Per-row alphas mixing both endpoints and interior values.
    alpha = torch.tensor([0.0, 1.0, 0.3, 0.0, 1.0, 0.5])
    out = fn(a, b, alpha)
    for i in (0, 3):
        assert torch.equal(out[i], a[i])
    for i in (1, 4):
        assert torch.equal(out[i], b[i])


def test_lerp_values():
    a, b = _pair()
    torch.testing.assert_close(lerp(a, b, 0.25), 0.75 * a + 0.25 * b)


def test_slerp_keeps_the_norm_of_equal_norm_inputs():
    a, b = _pair()
    a = a / a.norm(dim=1, keepdim=True) * 2.5
    b = b / b.norm(dim=1, keepdim=True) * 2.5
    for alpha in (0.1, 0.25, 0.5, 0.8, 0.95):
        torch.testing.assert_close(slerp(a, b, alpha).norm(dim=1), torch.full((6,), 2.5), rtol=1e-6, atol=1e-6)
    # lerp, by contrast, shrinks the midpoint of non-parallel vectors.
    assert (lerp(a, b, 0.5).norm(dim=1) < 2.5 - 1e-3).all()


def test_slerp_interpolates_angle_and_norm_linearly():
    a, b = _pair(n=4)
    alpha = 0.3
    out = slerp(a, b, alpha).double()
    ad, bd = a.double(), b.double()

    def angle(x, y):
        return torch.arccos((x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1))).clamp(0, math.pi)

    torch.testing.assert_close(angle(ad, out), alpha * angle(ad, bd), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(angle(out, bd), (1 - alpha) * angle(ad, bd), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.norm(dim=1), (1 - alpha) * ad.norm(dim=1) + alpha * bd.norm(dim=1), rtol=1e-5, atol=1e-5)


def test_slerp_near_parallel_and_zero_vectors_stay_finite():
    a = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    b = a + 1e-9
    out = slerp(a, b, 0.5)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, a, rtol=1e-5, atol=1e-5)
    zero = torch.zeros(3, 8)
    mixed = slerp(zero, a, 0.5)
    assert torch.isfinite(mixed).all()
    torch.testing.assert_close(mixed.norm(dim=1), 0.5 * a.norm(dim=1))


def test_interpolation_rows_order_and_validation():
    a, b = _pair(n=2, d=4)
    rows, alphas = interpolation_rows(a, b, [0.0, 0.5, 1.0], mode="lerp")
    assert rows.shape == (6, 4)
    assert alphas.tolist() == [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]
    assert torch.equal(rows[0], a[0]) and torch.equal(rows[2], b[0])
    assert torch.equal(rows[3], a[1]) and torch.equal(rows[5], b[1])
    torch.testing.assert_close(rows[4], 0.5 * (a[1] + b[1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolation_rows(a, b, [1.5])
    with pytest.raises(ValueError, match="at least one"):
        interpolation_rows(a, b, [])
    with pytest.raises(ValueError, match="unknown interpolation mode"):
        interpolate(a, b, 0.5, mode="cubic")
    with pytest.raises(ValueError, match="equal shapes"):
        slerp(a, b[:1], 0.5)


def test_one_interpolation_default_everywhere():
    import inspect

    from genview.generator import interpolation
    from genview.pipeline import GenerateSpec
    from genview.pipeline.shard import ViewSettings

    assert interpolation.DEFAULT_MODE == "lerp"  # Gen-SIS 9.4: "linearly-interpolated synthetic images"
    for fn in (interpolation.interpolate, interpolation.interpolation_rows):
        assert inspect.signature(fn).parameters["mode"].default == "lerp"
    assert GenerateSpec.model_fields["interpolation"].default == "lerp"
    assert ViewSettings.__dataclass_fields__["interpolation"].default == "lerp"
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert torch.equal(interpolation.interpolate(a, b, 0.25), interpolation.lerp(a, b, 0.25))
