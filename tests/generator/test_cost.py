"""Cost per view: FLOPs scale with steps and guidance; parameter counts of tiny and full presets."""

from __future__ import annotations

import pytest
import torch

from genview.generator.cost import (
    CostReport,
    StageCost,
    count_flops,
    flop_table,
    seed_views_per_second,
    view_cost,
)


def test_count_flops_of_a_matmul():
    a, b = torch.empty(8, 16, device="meta"), torch.empty(16, 4, device="meta")
    assert count_flops(torch.mm, a, b) == 2 * 8 * 16 * 4


def test_unclip_flops_scale_with_steps_and_guidance():
    base = view_cost("unclip", "tiny", num_inference_steps=10, guidance_scale=10.0)
    more = view_cost("unclip", "tiny", num_inference_steps=20, guidance_scale=10.0)
    plain = view_cost("unclip", "tiny", num_inference_steps=10, guidance_scale=1.0)
    unet = base.stage("denoiser")
    assert unet.calls_per_view == 10 and unet.flops_per_call > 0
    assert more.stage("denoiser").flops_per_view == 2 * unet.flops_per_view
    assert unet.flops_per_call == 2 * plain.stage("denoiser").flops_per_call
    # Only the denoiser depends on steps and guidance.
    for name in ("encoder", "decoder"):
        assert base.stage(name) == more.stage(name) == plain.stage(name)
    assert more.flops_per_view - base.flops_per_view == pytest.approx(unet.flops_per_view)
    assert base.settings["num_inference_steps"] == 10 and base.settings["image_size"] == 32


def test_unclip_encoder_share_and_text_encoder():
    report = view_cost("unclip", "tiny", k=4)
    assert report.stage("encoder").calls_per_view == pytest.approx(1.25)
    assert view_cost("unclip", "tiny", k=4, score_views=False).stage("encoder").calls_per_view == pytest.approx(0.25)
    text = report.stage("text_encoder")
    assert text.calls_per_view == 0 and text.flops_per_view == 0 and text.params > 0


def test_unclip_flops_grow_with_image_size():
    small = view_cost("unclip", "tiny", image_size=32).stage("denoiser").flops_per_call
    large = view_cost("unclip", "tiny", image_size=64).stage("denoiser").flops_per_call
    assert large > 3.5 * small  # 4x the pixels, attention grows faster


def test_full_unclip_parameter_counts():
    report = view_cost("unclip", "full", num_inference_steps=1)
    unet = report.stage("denoiser").params
    # SD 2.x UNet is ~865 M; unCLIP adds the 2048 -> 1280 image-embedding projection (~4.3 M).
    assert 860e6 < unet < 875e6
    assert 620e6 < report.stage("encoder").params < 640e6  # OpenCLIP ViT-H/14 vision tower + projection
    assert 45e6 < report.stage("decoder").params < 55e6  # SD VAE decoder
    assert report.settings["image_size"] == 768
    tiny = view_cost("unclip", "tiny")
    assert tiny.total_params < 1e6 < 1e9 < report.total_params


def test_report_arithmetic():
    stages = (StageCost("a", 10, 1_000, 2.0), StageCost("b", 5, 500, 0.5))
    report = CostReport("m", "tiny", {}, stages)
    assert report.total_params == 15 and report.flops_per_view == 2_250
    assert report.views_per_second(1e-6, 0.5) == pytest.approx(1e6 * 0.5 / 2_250)
    assert report.to_dict()["stages"][0]["flops_per_view"] == 2_000
    with pytest.raises(KeyError, match="stages: a, b"):
        report.stage("c")


def test_seed_measured_speed():
    # Seed 000, App. D: 1,281,167 views in ~178 h (unCLIP) and ~40 h (IC-GAN) per A100.
    assert seed_views_per_second("unclip") == pytest.approx(2.0, abs=0.01)
    assert seed_views_per_second("icgan") == pytest.approx(8.9, abs=0.01)


def test_unknown_model_and_params():
    with pytest.raises(ValueError, match="view_cost knows"):
        view_cost("nope")
    with pytest.raises(ValueError, match="unknown unCLIP param"):
        view_cost("unclip", "tiny", truncation=1.0)


def test_icgan_cost_tiny():
    report = view_cost("icgan", "tiny", k=10)
    assert [s.name for s in report.stages] == ["encoder", "generator"]
    assert report.stage("generator").calls_per_view == 1 and report.stage("generator").flops_per_call > 0
    assert report.stage("encoder").calls_per_view == pytest.approx(1.1)
    assert report.settings["image_size"] == 32


def test_flop_table_formats_rows():
    from genview.generator.cost import SEED_UNCLIP_ROW

    rows = ((SEED_UNCLIP_ROW, "unclip", {"num_inference_steps": 10}, "tiny"),
            ("unCLIP 768 px, 20 steps, guidance 10", "unclip", {"num_inference_steps": 20}))
    # The tiny preset keeps the test fast; bench/flop_table.py prints the full-size table.
    text = flop_table(rows=rows, utilisations=(1.0, 0.4), preset="tiny")
    head = text.splitlines()[0]
    assert "A100 @ 100%" in head and "H100 @ 40%" in head and "seed, measured" in head
    # The seed's measured 2.0 views/s sits beside its own setting (-small, 10 steps), not the pipeline defaults.
    assert f"| {SEED_UNCLIP_ROW} | " in text and "| 2.0 |" in text
    default_row = next(line for line in text.splitlines() if line.startswith("| unCLIP 768 px, 20 steps"))
    assert default_row.endswith("|  |")
    icgan = flop_table(rows=(("IC-GAN 256 px", "icgan", {}),), preset="tiny")
    assert "drew 16 samples per kept view" in icgan
    assert "the paper's 2.0 views/s is" in text and "| denoiser |" in text


def test_every_registered_model_has_a_cost():
    from genview.generator.registry import model_names

    for name in model_names():
        report = view_cost(name, "tiny")
        assert report.flops_per_view > 0 and report.total_params > 0, name


def test_eldm_flops_scale_with_steps_and_guidance():
    base = view_cost("eldm", "tiny", steps=10)
    more = view_cost("eldm", "tiny", steps=20)
    plain = view_cost("eldm", "tiny", steps=10, guidance_scale=1.0)
    assert base.settings["guidance_scale"] == 6.0  # Gen-SIS ImageNet preset
    assert view_cost("eldm", "tiny", guidance_preset="pathology").settings["guidance_scale"] == 1.75
    unet = base.stage("denoiser")
    assert unet.calls_per_view == 10 and more.stage("denoiser").flops_per_view == 2 * unet.flops_per_view
    assert unet.flops_per_call == 2 * plain.stage("denoiser").flops_per_call
    assert base.stage("decoder") == more.stage("decoder") and base.stage("encoder") == plain.stage("encoder")
    with pytest.raises(ValueError, match="unknown eldm params"):
        view_cost("eldm", "tiny", truncation=1.0)


def test_unclip_small_preset_cost():
    small = view_cost("unclip", "small", num_inference_steps=10)
    full = view_cost("unclip", "full", num_inference_steps=10)
    # ViT-L (~304 M) instead of OpenCLIP ViT-H (~632 M); the UNet differs only in its 1536-d class projection.
    assert 290e6 < small.stage("encoder").params < 320e6 < full.stage("encoder").params
    assert small.stage("decoder").flops_per_call == full.stage("decoder").flops_per_call
