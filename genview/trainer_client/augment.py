"""Standard augmentations applied after the generative one, with the seeds' values, as torchvision transforms.

Seed 000 (App. A.1) uses solo-learn's default augmentations per SSL method; its Table 4 gives the
symmetric ones (SimCLR, MoCo, and the "random crop" ablation of RQ4). Table 4 prints the 0.8
probability in the Crop block; it is the colour-jitter probability (solo-learn's ``color_jitter.prob``;
the random-crop column, which has no jitter, has 0.0 there). Table 5 (asymmetric: BYOL, Barlow
Twins) is not in our copy of the seed; those values are solo-learn's ``asymmetric.yaml``, which the
seed says it follows. Every transform here is a plain torchvision ``Compose`` a user can replace.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from PIL import Image, ImageFilter
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: What follows the generative augmentation (seed 000, Table 3 / RQ4):
#: "standard" = Generative & Standard, "crop" = Generative & Random Crop, "none" = Only generative.
VARIANTS = ("standard", "crop", "none")


class RandomGaussianBlur(torch.nn.Module):
    """Gaussian blur with probability p and radius ~ U(sigma): the SimCLR/solo-learn blur (PIL, no kernel size)."""

    def __init__(self, p: float = 0.5, sigma: tuple[float, float] = (0.1, 2.0)):
        super().__init__()
        self.p = float(p)
        self.sigma = (float(sigma[0]), float(sigma[1]))

    def forward(self, image: Image.Image) -> Image.Image:
        """Blur a PIL image (or return it unchanged)."""
        # torch's RNG, so DataLoader worker seeding makes the draw reproducible.
        if torch.rand(()) >= self.p:
            return image
        radius = self.sigma[0] + float(torch.rand(())) * (self.sigma[1] - self.sigma[0])
        return image.filter(ImageFilter.GaussianBlur(radius=radius))

    def extra_repr(self) -> str:
        """Settings shown in repr()."""
        return f"p={self.p}, sigma={self.sigma}"


@dataclass(frozen=True)
class AugmentParams:
    """One view's standard augmentation, in the order of seed 000 Sec. 4.1: crop, jitter, grayscale, blur, (solarize), flip."""

    crop_size: int = 224
    random_crop: bool = True  # False: resize the short side + centre crop (no random crop)
    crop_min_scale: float = 0.08
    crop_max_scale: float = 1.0
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarization_prob: float = 0.0
    hflip_prob: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def replace(self, **changes: Any) -> "AugmentParams":
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AugmentParams":
        """Rebuild from `to_dict` output."""
        data = dict(data)
        for name in ("blur_sigma", "mean", "std"):
            if name in data:
                data[name] = tuple(data[name])
        return cls(**data)


def build_transform(params: AugmentParams) -> T.Compose:
    """Return the torchvision pipeline PIL image -> normalised float tensor [3, S, S] for these params."""
    size = params.crop_size
    if params.random_crop:
        steps: list[Callable] = [
            T.RandomResizedCrop(
                size, scale=(params.crop_min_scale, params.crop_max_scale), interpolation=InterpolationMode.BICUBIC
            )
        ]
    else:
        steps = [T.Resize(size, interpolation=InterpolationMode.BICUBIC), T.CenterCrop(size)]
    if params.jitter_prob > 0:
        jitter = T.ColorJitter(params.brightness, params.contrast, params.saturation, params.hue)
        steps.append(T.RandomApply([jitter], p=params.jitter_prob))
    if params.grayscale_prob > 0:
        steps.append(T.RandomGrayscale(p=params.grayscale_prob))
    if params.blur_prob > 0:
        steps.append(RandomGaussianBlur(params.blur_prob, params.blur_sigma))
    if params.solarization_prob > 0:
        steps.append(T.RandomSolarize(threshold=128, p=params.solarization_prob))
    if params.hflip_prob > 0:
        steps.append(T.RandomHorizontalFlip(p=params.hflip_prob))
    steps += [T.ToTensor(), T.Normalize(params.mean, params.std)]
    return T.Compose(steps)


# -- the seeds' values -------------------------------------------------------------------------
#: Seed 000, Table 4, "SimCLR Standard" (= solo-learn symmetric.yaml).
SIMCLR = AugmentParams(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, jitter_prob=0.8,
                       grayscale_prob=0.2, blur_prob=0.5, solarization_prob=0.0, hflip_prob=0.5)
#: Seed 000, Table 4, "MoCo Standard" (= solo-learn symmetric_weak.yaml).
MOCO = AugmentParams(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, jitter_prob=0.8,
                     grayscale_prob=0.2, blur_prob=0.5, solarization_prob=0.0, hflip_prob=0.5)
#: Seed 000, Table 4, "SimCLR Random Crop": crop (0.08, 1) and flip only (the RQ4 ablation).
RANDOM_CROP = AugmentParams(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarization_prob=0.0, hflip_prob=0.5)
#: solo-learn asymmetric.yaml (seed 000 Table 5, BYOL / Barlow Twins):
#: view 1 always blurred, view 2 rarely blurred and sometimes solarised.
ASYMMETRIC_1 = AugmentParams(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, jitter_prob=0.8,
                             grayscale_prob=0.2, blur_prob=1.0, solarization_prob=0.0, hflip_prob=0.5)
ASYMMETRIC_2 = ASYMMETRIC_1.replace(blur_prob=0.1, solarization_prob=0.2)
#: DINO's two global crops (DINO's DataAugmentationDINO: scale (0.4, 1), blur 1.0 / 0.1 + solarize 0.2);
#: Gen-SIS (seed 003, Alg. 1) applies this "vanilla DINO augmentation" to primary, secondary and interpolated images.
DINO_GLOBAL_1 = ASYMMETRIC_1.replace(crop_min_scale=0.4)
DINO_GLOBAL_2 = ASYMMETRIC_2.replace(crop_min_scale=0.4)
#: DA IC-GAN's supervised recipes (seed 004, App. A.1): "Hflip" (p 0.5) and "RRCrop" (scale (0.08, 1)) + Hflip.
HFLIP = AugmentParams(random_crop=False, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, hflip_prob=0.5)
RRCROP_HFLIP = RANDOM_CROP

#: name -> (view 1 params, view 2 params).
PRESETS: dict[str, tuple[AugmentParams, AugmentParams]] = {
    "simclr": (SIMCLR, SIMCLR),
    "moco": (MOCO, MOCO),
    "simsiam": (MOCO, MOCO),  # solo-learn's simsiam.yaml uses symmetric_weak.yaml, the MoCo values
    "byol": (ASYMMETRIC_1, ASYMMETRIC_2),
    "barlow": (ASYMMETRIC_1, ASYMMETRIC_2),
    "dino": (DINO_GLOBAL_1, DINO_GLOBAL_2),
    "hflip": (HFLIP, HFLIP),
    "rrcrop": (RRCROP_HFLIP, RRCROP_HFLIP),
}


def preset_params(name: str, crop_size: int = 224, variant: str = "standard") -> tuple[AugmentParams, AugmentParams]:
    """Return a preset's (view 1, view 2) params at a crop size, for a Table 3 variant."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    first, second = PRESETS[name]
    if variant == "crop":
        # "Generative & Random Crop": only crop and flip remain, on both views (seed 000, RQ4).
        first = second = RANDOM_CROP.replace(crop_min_scale=first.crop_min_scale)
    elif variant == "none":
        # "Only generative": no standard augmentation at all; resize + centre crop so views batch.
        first = second = AugmentParams(random_crop=False, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0,
                                       solarization_prob=0.0, hflip_prob=0.0)
    return first.replace(crop_size=crop_size), second.replace(crop_size=crop_size)


def preset(name: str, crop_size: int = 224, variant: str = "standard") -> tuple[T.Compose, T.Compose]:
    """Return a preset's (view 1, view 2) torchvision transforms, e.g. preset("byol", 224)."""
    first, second = preset_params(name, crop_size, variant)
    return build_transform(first), build_transform(second)
