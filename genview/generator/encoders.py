"""Condition encoders for the E-LDM: DINO ViT (official checkpoint format), ResNet-50, TorchScript.

The ResNet-50 loader is IC-GAN's (genview.generator.resnet_features), reused as is.

Every encoder has one surface, `ConditionEncoder.embed(images) -> [N, D] float32` (raw, not
normalised: the E-LDM decides whether to L2-normalise), and saves itself in its own native
format beside a small `encoder.json` that says which kind it is.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from genview.generator.resnet_features import ResNetFeatures, load_resnet_features, save_torchvision_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Name of the file that records an encoder's kind, architecture and preprocessing.
ENCODER_JSON = "encoder.json"
#: Encoder kinds, as written in encoder.json and accepted as `KIND:PATH` specs.
KINDS = ("dino", "resnet50", "torchscript")
#: Weight file names inside a saved encoder folder (each in the kind's native format).
WEIGHT_FILES = {"dino": "dino_vit.pth", "resnet50": "resnet50.pth", "torchscript": "encoder.pt"}

#: DINO ViT architectures. `vits16` is the Gen-SIS encoder (dino_deitsmall16_pretrain.pth).
DINO_PRESETS: dict[str, dict[str, Any]] = {
    "vits16": {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6},
    "vits8": {"img_size": 224, "patch_size": 8, "embed_dim": 384, "depth": 12, "num_heads": 6},
    "vitb16": {"img_size": 224, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12},
    "vitb8": {"img_size": 224, "patch_size": 8, "embed_dim": 768, "depth": 12, "num_heads": 12},
    # Same key scheme, toy sizes: for tests and `genview models init eldm --preset tiny`.
    "tiny": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
}


class EncoderLoadError(ValueError):
    """Raised when an encoder checkpoint cannot be read or does not match the expected format."""


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing: resize the short side, centre crop, scale to [0, 1], normalise."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def for_crop(cls, crop: int) -> "Preprocess":
        """Return DINO's recipe (resize 256 / crop 224) scaled to another crop size."""
        return cls(resize=int(round(crop * 256 / 224)), crop=int(crop))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocess":
        """Build from `to_dict` output."""
        return cls(int(data["resize"]), int(data["crop"]), tuple(data["mean"]), tuple(data["std"]))


def resize_center_crop(img: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """Resize uint8/float [N,3,H,W] so the short side is `resize` (bicubic, antialiased), then centre crop."""
    h, w = img.shape[-2:]
    scale = resize / min(h, w)
    size = (max(crop, int(round(h * scale))), max(crop, int(round(w * scale))))
    out = F.interpolate(img.float(), size=size, mode="bicubic", antialias=True, align_corners=False)
    top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
    return out[..., top : top + crop, left : left + crop]


def images_to_uint8(images: Sequence[Image.Image | torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
    """Return the images as a list of uint8 [3,H,W] tensors (PIL images converted to RGB; [3,H,W] tensors kept)."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"image tensors must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        return list(images)
    out = []
    for img in images:
        if isinstance(img, torch.Tensor):  # a list of differently sized uint8 [3, H, W] tensors
            if img.ndim != 3 or img.shape[0] != 3 or img.dtype != torch.uint8:
                raise ValueError(f"image tensors must be uint8 [3, H, W], got {img.dtype} {tuple(img.shape)}")
            out.append(img)
            continue
        arr = np.asarray(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.uint8)
        out.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
    return out


def preprocess_images(
    images: Sequence[Image.Image] | torch.Tensor, pre: Preprocess, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Return the normalised float32 [N,3,crop,crop] batch (on `device`, where the resize runs) of images."""
    if isinstance(images, torch.Tensor):
        images_to_uint8(images)  # validates dtype and shape
        batch = resize_center_crop(images.to(device), pre.resize, pre.crop)
    else:
        pixels = images_to_uint8(images)
        batch = torch.cat([resize_center_crop(t[None].to(device), pre.resize, pre.crop) for t in pixels])
    mean = torch.tensor(pre.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=batch.device).view(1, 3, 1, 1)
    return ((batch.clamp(0, 255) / 255.0) - mean) / std


# ---------------------------------------------------------------------------------------------
# DINO ViT: module and parameter names follow facebookresearch/dino vision_transformer.py, so
# `load_state_dict(torch.load("dino_deitsmall16_pretrain.pth"), strict=True)` works unchanged.
# ---------------------------------------------------------------------------------------------


class _PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        # SDPA computes DINO's softmax(q k^T * head_dim^-0.5) v, fused where the backend allows.
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = _Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DinoVisionTransformer(nn.Module):
    """DINO's ViT backbone (no head): returns the final-norm CLS token, as DINO's k-NN evaluation uses."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.config = {
            "img_size": img_size,
            "patch_size": patch_size,
            "embed_dim": embed_dim,
            "depth": depth,
            "num_heads": num_heads,
            "mlp_ratio": mlp_ratio,
            "qkv_bias": qkv_bias,
            "layer_norm_eps": layer_norm_eps,
        }
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.patch_embed = _PatchEmbed(patch_size, embed_dim)
        num_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList(
            [_Block(embed_dim, num_heads, mlp_ratio, qkv_bias, layer_norm_eps) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as DINO does (truncated normal 0.02 for tokens and linears, unit LayerNorms)."""
        if self.pos_embed.is_meta:
            return
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _pos_embed_for(self, tokens: int, h: int, w: int) -> torch.Tensor:
        """Return the position embedding, bicubically resized when the input grid differs from training."""
        if tokens == self.pos_embed.shape[1]:
            return self.pos_embed
        side = int(math.sqrt(self.pos_embed.shape[1] - 1))
        grid = self.pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h // self.patch_size, w // self.patch_size), mode="bicubic", align_corners=False)
        return torch.cat([self.pos_embed[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self._pos_embed_for(tokens.shape[1], h, w)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def _strip_prefixes(state: dict[str, torch.Tensor], prefixes: Sequence[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (DDP `module.`, DINO's multi-crop `backbone.`) from every key."""
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def _torch_load(path: str | os.PathLike) -> Any:
    """Load a checkpoint of tensors (weights_only: never unpickles code); the error names the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EncoderLoadError(f"encoder checkpoint {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a plain weights file"
        raise EncoderLoadError(f"cannot read encoder checkpoint {path} as a torch weights file: {exc}") from None


def dino_state_dict(checkpoint: Any, source: str = "checkpoint", key: str = "teacher") -> dict[str, torch.Tensor]:
    """Return the backbone state dict of an official DINO file (plain backbone, or a full training checkpoint)."""
    if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
        checkpoint = checkpoint[key]  # full checkpoints hold student/teacher; DINO evaluates the teacher
    elif isinstance(checkpoint, dict) and "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise EncoderLoadError(f"{source} is not a DINO state dict")
    state = _strip_prefixes(checkpoint, ("module.", "backbone."))
    # The DINO projection head is for the SSL loss only; the condition is the backbone's CLS token.
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    if "cls_token" not in state or "pos_embed" not in state:
        raise EncoderLoadError(f"{source} has no cls_token/pos_embed: not a DINO ViT checkpoint")
    return state


def dino_config_from_state(state: dict[str, torch.Tensor], num_heads: int | None = None) -> dict[str, Any]:
    """Infer a DinoVisionTransformer config from checkpoint shapes (heads: DINO's 64 per head unless given)."""
    embed_dim = int(state["cls_token"].shape[-1])
    patch = int(state["patch_embed.proj.weight"].shape[-1])
    tokens = int(state["pos_embed"].shape[1])
    side = int(round(math.sqrt(tokens - 1)))
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    hidden = int(state["blocks.0.mlp.fc1.weight"].shape[0])
    return {
        "img_size": side * patch,
        "patch_size": patch,
        "embed_dim": embed_dim,
        "depth": depth,
        # Shapes cannot tell the head count; every DINO ViT (S: 6, B: 12) uses 64 channels per head.
        "num_heads": int(num_heads) if num_heads else max(1, embed_dim // 64),
        "mlp_ratio": hidden / embed_dim,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        "layer_norm_eps": 1e-6,
    }


# ---------------------------------------------------------------------------------------------
# The one interface.
# ---------------------------------------------------------------------------------------------


class ConditionEncoder:
    """A frozen image encoder plus its preprocessing; `embed` returns raw float32 [N, D] on the CPU."""

    def __init__(self, kind: str, network: nn.Module, preprocess: Preprocess, config: dict[str, Any] | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown encoder kind {kind!r}; known kinds: {', '.join(KINDS)}")
        self.kind = kind
        self.network = network.eval()
        for param in network.parameters():  # (ScriptModules lack requires_grad_)
            param.requires_grad_(False)
        self.preprocess = preprocess
        self.config = dict(config or {})
        self._embed_dim: int | None = self.config.get("embed_dim")

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def dino(cls, arch: str | dict[str, Any] = "vits16", seed: int = 0, device: str | torch.device = "cpu") -> "ConditionEncoder":
        """Return a randomly initialised DINO ViT of a preset name (`vits16`, `tiny`, ...) or config dict."""
        if isinstance(arch, str) and arch not in DINO_PRESETS:
            raise ValueError(f"unknown DINO preset {arch!r}; known: {', '.join(DINO_PRESETS)}")
        config = dict(DINO_PRESETS[arch]) if isinstance(arch, str) else dict(arch)
        device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with torch.device(device):
                net = DinoVisionTransformer(**config)
        return cls("dino", net, Preprocess.for_crop(config["img_size"]), net.config)

    @classmethod
    def from_dino_checkpoint(cls, path: str | os.PathLike, num_heads: int | None = None, key: str = "teacher") -> "ConditionEncoder":
        """Load an official DINO ViT checkpoint (e.g. dino_deitsmall16_pretrain.pth) strictly."""
        state = dino_state_dict(_torch_load(path), str(path), key)
        config = dino_config_from_state(state, num_heads)
        net = DinoVisionTransformer(**config)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise EncoderLoadError(
                f"DINO checkpoint {path} does not match the ViT layout: missing {sorted(missing)[:8]}, "
                f"unexpected {sorted(unexpected)[:8]}"
            )
        return cls("dino", net, Preprocess.for_crop(config["img_size"]), net.config)

    @classmethod
    def resnet50(cls, seed: int = 0) -> "ConditionEncoder":
        """Return a randomly initialised ResNet-50 feature encoder (2048-d pooled features)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = ResNetFeatures([3, 4, 6, 3])
        return cls("resnet50", net, Preprocess(), {"embed_dim": net.feature_dim, "arch": net.arch})

    @classmethod
    def from_resnet50_checkpoint(cls, path: str | os.PathLike) -> "ConditionEncoder":
        """Load a torchvision-keyed ResNet-50 checkpoint (`module.` prefix, `state_dict` wrapper, SwAV heads tolerated)."""
        if not Path(path).is_file():
            raise EncoderLoadError(f"encoder checkpoint {path} does not exist")
        try:
            net = load_resnet_features(path)
        except (ValueError, RuntimeError, pickle.UnpicklingError) as exc:
            raise EncoderLoadError(f"cannot load ResNet checkpoint {path}: {exc}") from None
        return cls("resnet50", net, Preprocess(), {"embed_dim": net.feature_dim, "arch": net.arch})

    @classmethod
    def from_torchscript(cls, path: str | os.PathLike, preprocess: Preprocess | None = None) -> "ConditionEncoder":
        """Load a user's TorchScript module mapping a normalised [N,3,H,W] batch to [N, D] features."""
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream; user files still exist
                warnings.simplefilter("ignore", FutureWarning)
                net = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/ValueError variants here
            raise EncoderLoadError(f"cannot load TorchScript encoder {path}: {exc}") from None
        return cls("torchscript", net, preprocess or Preprocess(), {})

    # ---- use ----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Device the network runs on."""
        for tensor in list(self.network.parameters()) + list(self.network.buffers()):
            return tensor.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> "ConditionEncoder":
        """Move the network to `device`; returns self."""
        self.network.to(device)
        return self

    @property
    def embed_dim(self) -> int:
        """Size D of the embeddings (probed once with a blank image for TorchScript modules)."""
        if self._embed_dim is None:
            blank = torch.zeros(1, 3, self.preprocess.crop, self.preprocess.crop, dtype=torch.uint8)
            self._embed_dim = int(self.embed(blank).shape[1])
            self.config["embed_dim"] = self._embed_dim
        return self._embed_dim

    @torch.no_grad()
    def embed(self, images: Sequence[Image.Image] | torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Return raw float32 embeddings [N, D] on the CPU of RGB PIL images or a uint8 [N,3,H,W] tensor."""
        n = len(images)
        if n == 0:
            raise ValueError("embed() needs at least one image")
        device = self.device
        outputs = []
        for start in range(0, n, batch_size):
            chunk = images[start : start + batch_size]
            batch = preprocess_images(chunk, self.preprocess, device)
            feats = self.network(batch)
            if isinstance(feats, (tuple, list)):
                feats = feats[0]
            if feats.ndim != 2:
                feats = feats.flatten(1)
            outputs.append(feats.float().cpu())
        return torch.cat(outputs)

    # ---- save / load --------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> None:
        """Write encoder.json and the weights in the kind's native format (DINO/torchvision keys, TorchScript)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / WEIGHT_FILES[self.kind]
        if self.kind == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                torch.jit.save(self.network, str(weights))
        elif self.kind == "resnet50":
            save_torchvision_checkpoint(self.network, weights)
        else:
            state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
            torch.save(state, weights)
        # Record D (probed once for TorchScript) so loading never needs a forward pass.
        self.config["embed_dim"] = self.embed_dim
        info = {
            "kind": self.kind,
            "weights": weights.name,
            "config": self.config,
            "preprocess": self.preprocess.to_dict(),
        }
        (directory / ENCODER_JSON).write_text(json.dumps(info, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ConditionEncoder":
        """Load a folder written by `save`."""
        directory = Path(directory)
        info_path = directory / ENCODER_JSON
        if not info_path.is_file():
            raise EncoderLoadError(f"{directory} has no {ENCODER_JSON}: not a saved condition encoder")
        info = json.loads(info_path.read_text())
        kind, weights = info["kind"], directory / info["weights"]
        pre = Preprocess.from_dict(info["preprocess"])
        if kind == "dino":
            enc = cls.from_dino_checkpoint(weights, num_heads=info["config"].get("num_heads"))
        elif kind == "resnet50":
            enc = cls.from_resnet50_checkpoint(weights)
        elif kind == "torchscript":
            enc = cls.from_torchscript(weights)
        else:
            raise EncoderLoadError(f"{info_path}: unknown encoder kind {kind!r}; known kinds: {', '.join(KINDS)}")
        enc.preprocess = pre
        enc.config.update(info.get("config", {}))
        enc._embed_dim = enc.config.get("embed_dim", enc._embed_dim)
        return enc

    def fingerprint(self) -> str:
        """Return a short digest of kind, preprocessing and weights (keys embedding caches)."""
        import hashlib

        digest = hashlib.sha256(json.dumps([self.kind, self.preprocess.to_dict()]).encode())
        for name, tensor in sorted(self.network.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


def _has_dino_keys(checkpoint: Any, name: str) -> bool:
    """True when a loaded checkpoint holds a DINO ViT's state dict (in any layout `dino_state_dict` reads)."""
    try:
        dino_state_dict(checkpoint, name)
    except EncoderLoadError:
        return False
    return True


def _is_torchscript_archive(path: Path) -> bool:
    """Return True for a TorchScript zip archive (it carries a code/ folder; plain state dicts do not)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_condition_encoder(spec: str | os.PathLike, image_size: int | None = None) -> ConditionEncoder:
    """Return the encoder a CLI `--encoder` value names.

    Accepted forms: `dino:PATH` (official DINO ViT checkpoint), `resnet50:PATH` (torchvision keys),
    `torchscript:PATH`, `preset:dino-vits16` / `preset:dino-tiny` / `preset:resnet50` (random
    weights), a folder holding encoder.json, or a bare file path whose kind is detected
    (TorchScript archive, DINO keys, ResNet-50 keys). `image_size` overrides the crop size of
    TorchScript encoders (default 224).
    """
    spec = str(spec)
    kind, _, rest = spec.partition(":")
    if kind == "preset":
        name = rest
        if name.startswith("dino-") and name[5:] in DINO_PRESETS:
            return ConditionEncoder.dino(name[5:])
        if name == "resnet50":
            return ConditionEncoder.resnet50()
        known = [f"dino-{k}" for k in DINO_PRESETS] + ["resnet50"]
        raise ValueError(f"--encoder preset:{name}: unknown preset; known presets: {', '.join(known)}")
    if kind in KINDS and rest:
        path = Path(rest)
    else:
        kind, path = "", Path(spec)
    if not path.exists():
        raise EncoderLoadError(f"--encoder {spec}: {path} does not exist")
    if path.is_dir():
        return ConditionEncoder.load(path)
    pre = Preprocess.for_crop(image_size) if image_size else None
    if kind == "torchscript" or (not kind and _is_torchscript_archive(path)):
        return ConditionEncoder.from_torchscript(path, pre)
    if kind == "dino":
        return ConditionEncoder.from_dino_checkpoint(path)
    if kind == "resnet50":
        return ConditionEncoder.from_resnet50_checkpoint(path)
    checkpoint = _torch_load(path)
    if _has_dino_keys(checkpoint, str(path)):
        return ConditionEncoder.from_dino_checkpoint(path)
    try:
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else {}
        if not any(k.endswith("layer4.0.conv1.weight") for k in state):
            raise EncoderLoadError("no ResNet keys")
        return ConditionEncoder.from_resnet50_checkpoint(path)
    except EncoderLoadError:
        raise EncoderLoadError(
            f"--encoder {spec}: cannot tell the encoder kind (no DINO ViT or ResNet-50 keys, not TorchScript); "
            f"prefix it with one of {', '.join(k + ':' for k in KINDS)}"
        ) from None

