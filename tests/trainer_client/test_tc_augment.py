"""Augmentation presets carry the seeds' numbers and build working torchvision pipelines."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from genview.trainer_client.augment import (
    AugmentParams,
    RandomGaussianBlur,
    build_transform,
    preset,
    preset_params,
)


def test_simclr_and_moco_match_seed_table_4():
    simclr, _ = preset_params("simclr")
    assert (simclr.brightness, simclr.contrast, simclr.saturation, simclr.hue) == (0.8, 0.8, 0.8, 0.2)
    assert (simclr.crop_min_scale, simclr.crop_max_scale, simclr.jitter_prob) == (0.08, 1.0, 0.8)
    assert (simclr.grayscale_prob, simclr.blur_prob, simclr.solarization_prob, simclr.hflip_prob) == (0.2, 0.5, 0.0, 0.5)
    moco, _ = preset_params("moco")
    assert (moco.brightness, moco.contrast, moco.saturation, moco.hue) == (0.4, 0.4, 0.4, 0.1)
    crop, _ = preset_params("simclr", variant="crop")
    assert (crop.jitter_prob, crop.grayscale_prob, crop.blur_prob, crop.hflip_prob) == (0.0, 0.0, 0.0, 0.5)


def test_byol_is_asymmetric():
    first, second = preset_params("byol", crop_size=96)
    assert (first.blur_prob, first.solarization_prob) == (1.0, 0.0)
    assert (second.blur_prob, second.solarization_prob) == (0.1, 0.2)
    assert first.crop_size == second.crop_size == 96


def test_transforms_produce_normalised_tensors():
    image = Image.new("RGB", (40, 30), (200, 30, 90))
    for name in ("simclr", "byol", "dino", "hflip", "rrcrop"):
        for t in preset(name, crop_size=16):
            out = t(image)
            assert out.shape == (3, 16, 16) and out.dtype == torch.float32


def test_params_round_trip_and_replace():
    params = AugmentParams(crop_size=64, blur_sigma=(0.2, 1.0))
    assert AugmentParams.from_dict(params.to_dict()) == params
    assert params.replace(hue=0.0).hue == 0.0


def test_only_generative_variant_has_no_randomness():
    t = build_transform(preset_params("simclr", crop_size=8, variant="none")[0])
    image = Image.effect_noise((20, 20), 40).convert("RGB")
    assert torch.equal(t(image), t(image))
    assert not any(isinstance(step, (T.RandomResizedCrop, T.RandomApply)) for step in t.transforms)


def test_blur_probability_extremes():
    image = Image.effect_noise((16, 16), 60).convert("RGB")
    assert RandomGaussianBlur(p=0.0)(image) is image
    assert RandomGaussianBlur(p=1.0)(image).tobytes() != image.tobytes()


def test_unknown_preset_and_variant():
    with pytest.raises(ValueError, match="known: barlow"):
        preset("vicreg")
    with pytest.raises(ValueError, match="unknown variant"):
        preset("simclr", variant="jitter")
