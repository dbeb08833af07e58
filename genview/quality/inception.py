"""The FID network: Inception-v3 pool features (2048-d) from the standard FID weights file.

The weights file is the one pytorch-fid, torch-fidelity and torchmetrics load,
``pt_inception-2015-12-05-6726825d.pth`` (a plain state dict, keys ``Conv2d_1a_3x3.conv.weight`` ...
``Mixed_7c...``, ``fc.weight``), read by torch-fidelity's ``FeatureExtractorInceptionV3`` with a
strict ``load_state_dict``. Nothing is downloaded: the user gives the file. The random preset is
the same architecture (FID is defined on these 2048-d features, so there is no smaller variant)
with randomly initialised weights, written in the same format and marked as random.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from genview.generator.base import WeightsInfo, WeightsNotFoundError, read_random_marker, sha256_files, write_random_marker

#: File name of the standard FID weights (torch-fidelity's URL_INCEPTION_V3 basename).
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
#: Dimension of the pool features FID and KID are computed on.
FEATURE_DIM = 2048
#: The network's input side; torch-fidelity resizes every image to it (TF1-compatible bilinear).
INPUT_SIZE = 299
#: Gain on the random preset's last block (ReLU is positive-homogeneous: pool features scale by it).
RANDOM_FEATURE_GAIN = 3.0
#: Mixed_7c's branch ends, whose ReLU outputs are concatenated into the 2048 pool features.
_MIXED_7C_OUTPUTS = ("branch1x1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool")


def _extractor_class():
    """Return torch-fidelity's FID Inception class (imported late: it is heavy)."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("genview quality needs torch-fidelity (pip install 'genview[quality]')") from exc
    return FeatureExtractorInceptionV3


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Return a randomly initialised FID Inception state dict with exactly the standard file's keys."""
    base = _extractor_class()

    class _Unloaded(base):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # noqa: D102 - nothing to load for a random preset
            return None

    with tempfile.TemporaryDirectory() as tmp:
        empty = os.path.join(tmp, "empty.pth")
        torch.save({}, empty)
        torch.manual_seed(seed)
        model = _Unloaded("inception-v3-compat", [str(FEATURE_DIM)], feature_extractor_weights_path=empty)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            # He init keeps activations at unit scale through ~90 conv layers (PyTorch's default shrinks
            # them layer by layer), so random features are not all near zero.
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
        # The last block's BN affine is scaled so random pool features (mean ~0.4 instead of ~0.14) give FIDs of
        # tens to hundreds, the range DA IC-GAN reports and its 150 threshold is set in. Meaningless, but on scale.
        # Only the convs whose outputs are concatenated into the pool features: scaling a chain would compound.
        for name in _MIXED_7C_OUTPUTS:
            bn = getattr(model.Mixed_7c, name).bn
            bn.weight.mul_(RANDOM_FEATURE_GAIN)
            bn.bias.mul_(RANDOM_FEATURE_GAIN)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def init_random_inception(out: str | os.PathLike, seed: int = 0) -> Path:
    """Write a random FID Inception in the standard file format into folder `out`, marked random; return the file."""
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / INCEPTION_FILE
    torch.save(random_inception_state(seed), path)
    write_random_marker(directory, "inception", "tiny", seed)
    return path


def resolve_inception_file(weights: str | os.PathLike) -> Path:
    """Return the weights file of `--inception-weights` (the file itself, or the standard name inside a folder)."""
    path = Path(weights)
    if path.is_dir():
        path = path / INCEPTION_FILE
    if not path.is_file():
        raise WeightsNotFoundError(
            f"--inception-weights {weights}: no FID Inception weights there (expected the file {INCEPTION_FILE}, as "
            "pytorch-fid / torch-fidelity use it, or a folder holding it); for a random test preset run "
            "`genview models init inception --preset tiny --out DIR`"
        )
    return path


class InceptionFeatures:
    """FID Inception-v3: uint8 images of any size -> [N, 2048] pool features, and where its weights came from."""

    def __init__(self, weights: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 32):
        path = resolve_inception_file(weights)
        try:
            self.network = _extractor_class()(
                "inception-v3-compat", [str(FEATURE_DIM)], feature_extractor_weights_path=str(path)
            )
        except RuntimeError as exc:  # strict load_state_dict: missing / unexpected keys or shapes
            raise ValueError(f"--inception-weights {path} is not an FID Inception-v3 state dict: {exc}") from None
        self.network.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        marker = read_random_marker(path.parent)
        self.weights = WeightsInfo(
            id=str(path), sha256=sha256_files([path]), random_init=marker is not None,
            preset=marker.get("preset") if marker else None,
        )

    @torch.no_grad()
    def embed(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return float32 [N, 2048] features of uint8 [3, H, W] images (batched by size)."""
        out = torch.empty(len(images), FEATURE_DIM)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            by_size.setdefault(tuple(img.shape[-2:]), []).append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = torch.stack([images[i] for i in chunk]).to(self.device)
                feats = self.network(batch)
                feats = feats[0] if isinstance(feats, (tuple, list)) else feats
                out[chunk] = feats.float().cpu()
        return out
