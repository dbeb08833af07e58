"""ResNet feature extractors of IC-GAN (SwAV ResNet-50) and CC-IC-GAN (supervised torchvision ResNet-50).

* ``ResNetFeatures`` is torchvision's ResNet (same ``Bottleneck`` blocks, same key names) with the
  stem width, stage widths and block counts as arguments, so the real ResNet-50 and the tiny
  preset load through the same code; the architecture is read off the state_dict.
* Checkpoint formats: SwAV's ``swav_800ep_pretrain.pth.tar`` (keys prefixed ``module.``, plus the
  ``projection_head.*`` / ``prototypes.*`` heads, which are dropped by name) and torchvision's
  ``resnet50-19c8e357.pth`` (plain keys, with ``fc``).
* ``ic_gan_preprocess`` reproduces ic_gan's feature-extraction input: centre crop of the long
  edge to a square, resize to the generator resolution (PIL bilinear), [0, 1] scaling, ImageNet
  mean/std, bicubic resize to 224 (``data_utils/make_hdf5.py``, which made the training features).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Input side of the ResNet in ic_gan's feature extraction.
ENCODER_INPUT_SIZE = 224
#: SwAV training heads stored next to the backbone in ``swav_800ep_pretrain.pth.tar``; not part of the features.
SWAV_HEAD_PREFIXES = ("projection_head.", "prototypes.")
_MAX_LISTED_KEYS = 20


def _list_keys(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED_KEYS else "")


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``module``; any missing, unexpected or mis-shaped key raises, listing the keys.

    BatchNorm ``num_batches_tracked`` counters may be absent (checkpoints older than PyTorch 0.4.1,
    such as ``resnet50-19c8e357.pth``, predate them; eval mode never reads them): they are set to 0.
    """
    expected = module.state_dict()
    state = dict(state_dict)
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_list_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_list_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {'; '.join(mismatched[:_MAX_LISTED_KEYS])}")
    if problems:
        raise ValueError(f"{source} does not match the model ({len(expected)} entries expected): " + " | ".join(problems))
    module.load_state_dict(state, strict=True)


class ResNetFeatures(ResNet):
    """torchvision Bottleneck ResNet returning global-average-pooled features; widths are arguments.

    ``ResNetFeatures([3, 4, 6, 3])`` is ResNet-50 (2048-d features). ``fc`` exists only when
    ``num_classes`` is given (torchvision checkpoints carry it); it is loaded but never applied.
    """

    def __init__(
        self,
        layers: Sequence[int],
        planes: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        width_per_group: int = 64,
        num_classes: int | None = None,
    ):
        # torchvision's ResNet.__init__ hard-codes the widths, so set up the same attributes here
        # and build the stages with its own _make_layer: key names stay torchvision's.
        nn.Module.__init__(self)
        if len(layers) != 4 or len(planes) != 4:
            raise ValueError("ResNetFeatures needs 4 block counts and 4 stage widths")
        self.arch = {
            "layers": [int(n) for n in layers],
            "planes": [int(p) for p in planes],
            "stem_width": int(stem_width),
            "width_per_group": int(width_per_group),
            "num_classes": None if num_classes is None else int(num_classes),
        }
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = stem_width
        self.dilation = 1
        self.groups = 1
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(Bottleneck, planes[0], layers[0])
        self.layer2 = self._make_layer(Bottleneck, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(Bottleneck, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(Bottleneck, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        if num_classes is not None:
            self.fc = nn.Linear(planes[3] * Bottleneck.expansion, num_classes)
        else:
            self.fc = None
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
        self.eval()

    @property
    def feature_dim(self) -> int:
        """Size of the pooled feature vector."""
        return self.arch["planes"][3] * Bottleneck.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return pooled (not normalised) features [N, feature_dim] of normalised images [N, 3, H, W]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], source: str = "state_dict") -> "ResNetFeatures":
        """Build the ResNet a (prefix-free) torchvision-style state_dict describes and load it strictly."""
        model = cls(**infer_resnet_arch(state_dict, source))
        load_state_dict_strict(model, state_dict, source)
        return model


def infer_resnet_arch(state_dict: Mapping[str, torch.Tensor], source: str = "state_dict") -> dict[str, Any]:
    """Read block counts, widths and classifier size off a torchvision Bottleneck-ResNet state_dict."""
    if "conv1.weight" not in state_dict:
        raise ValueError(
            f"{source} is not a torchvision ResNet state_dict: no conv1.weight (keys: {_list_keys(list(state_dict))})"
        )
    layers, planes, widths = [], [], []
    for stage in range(1, 5):
        prefix = f"layer{stage}."
        indices = {int(k.split(".")[1]) for k in state_dict if k.startswith(prefix)}
        if not indices or indices != set(range(len(indices))):
            raise ValueError(f"{source}: blocks of layer{stage} are {sorted(indices)}, expected 0..n-1")
        try:
            width = state_dict[f"{prefix}0.conv1.weight"].shape[0]
            out = state_dict[f"{prefix}0.conv3.weight"].shape[0]
        except KeyError as err:
            raise ValueError(f"{source}: not a Bottleneck ResNet ({err.args[0]} missing)") from None
        if out % Bottleneck.expansion:
            raise ValueError(f"{source}: {prefix}0.conv3 has {out} channels, not a multiple of {Bottleneck.expansion}")
        layers.append(len(indices))
        planes.append(out // Bottleneck.expansion)
        widths.append(width)
    width_per_group = {w * 64 // p for w, p in zip(widths, planes)}
    if len(width_per_group) != 1 or any(w * 64 % p for w, p in zip(widths, planes)):
        raise ValueError(f"{source}: stage widths {widths} for planes {planes} do not share one width_per_group")
    fc = state_dict.get("fc.weight")
    return {
        "layers": layers,
        "planes": planes,
        "stem_width": int(state_dict["conv1.weight"].shape[0]),
        "width_per_group": width_per_group.pop(),
        "num_classes": None if fc is None else int(fc.shape[0]),
    }


def read_resnet_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a SwAV or torchvision ResNet checkpoint into a plain torchvision-key state_dict.

    Accepted: a raw state_dict or ``{"state_dict": ...}``; every key prefixed ``module.`` (saved
    from DataParallel, as SwAV's files are) or none; SwAV's heads (``projection_head.*``,
    ``prototypes.*``) are dropped by name. Anything else left over fails the strict load.
    """
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(blob, Mapping) and "state_dict" in blob and isinstance(blob["state_dict"], Mapping):
        blob = blob["state_dict"]
    if not isinstance(blob, Mapping) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise ValueError(f"{path}: expected a ResNet state_dict (name -> tensor)")
    keys = list(blob)
    prefixed = [k.startswith("module.") for k in keys]
    if any(prefixed) and not all(prefixed):
        bare = [k for k in keys if not k.startswith("module.")]
        raise ValueError(f"{path}: some keys are prefixed 'module.' and some are not: {_list_keys(bare)}")
    strip = len("module.") if keys and all(prefixed) else 0
    return {k[strip:]: v for k, v in blob.items() if not k[strip:].startswith(SWAV_HEAD_PREFIXES)}


def load_resnet_features(path: str | os.PathLike) -> ResNetFeatures:
    """Load a SwAV (``swav_800ep_pretrain.pth.tar``) or torchvision (``resnet50-19c8e357.pth``) ResNet file."""
    return ResNetFeatures.from_state_dict(read_resnet_checkpoint(path), source=str(path))


def _cpu_state(model: ResNetFeatures) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_swav_checkpoint(model: ResNetFeatures, path: str | os.PathLike) -> None:
    """Write the backbone in SwAV's file format (keys prefixed ``module.``; genview has no SwAV heads to add)."""
    torch.save({f"module.{k}": v for k, v in _cpu_state(model).items()}, Path(path))


def save_torchvision_checkpoint(model: ResNetFeatures, path: str | os.PathLike) -> None:
    """Write the model in torchvision's file format (plain keys, ``fc`` included when present)."""
    torch.save(_cpu_state(model), Path(path))


def crop_and_resize(images: Sequence[Image.Image] | torch.Tensor, resolution: int) -> torch.Tensor:
    """Return uint8 [N, 3, R, R]: centre crop of the long edge to a square, then PIL bilinear resize to R.

    A uint8 tensor that is already [N, 3, R, R] is returned as is (the crop and resize would be
    identities); other tensors go through PIL so tensor and PIL inputs give the same pixels.
    """
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"image tensors must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        if images.shape[2] == images.shape[3] == resolution:
            return images
        images = [TF.to_pil_image(img) for img in images.cpu()]
    out = []
    for image in images:
        if image.mode != "RGB":
            image = image.convert("RGB")
        image = TF.center_crop(image, min(image.size))
        image = TF.resize(image, [resolution, resolution], interpolation=TF.InterpolationMode.BILINEAR)
        out.append(TF.pil_to_tensor(image))
    if not out:
        return torch.empty(0, 3, resolution, resolution, dtype=torch.uint8)
    return torch.stack(out)


def normalize_for_encoder(pixels: torch.Tensor, input_size: int = ENCODER_INPUT_SIZE) -> torch.Tensor:
    """Map uint8 [N, 3, R, R] to the ResNet input: [0, 1], ImageNet mean/std, bicubic resize to ``input_size``."""
    x = pixels.float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    # ic_gan's make_hdf5.py: F.upsample(x, 224, mode="bicubic"), i.e. align_corners=False.
    return F.interpolate(x, size=(input_size, input_size), mode="bicubic", align_corners=False)


def ic_gan_preprocess(
    images: Sequence[Image.Image] | torch.Tensor, resolution: int, input_size: int = ENCODER_INPUT_SIZE
) -> torch.Tensor:
    """Return ic_gan's feature-extractor input [N, 3, input_size, input_size] (float32, CPU) for RGB images."""
    return normalize_for_encoder(crop_and_resize(images, resolution), input_size)
