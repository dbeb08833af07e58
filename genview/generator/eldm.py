"""E-LDM (Gen-SIS): a latent diffusion model conditioned on the embedding of the user's own SSL encoder.

Networks: a frozen VQ-f4 autoencoder (diffusers `VQModel`), a `UNet2DConditionModel` that
cross-attends to ONE context token, `ConditionProjection` (embedding -> that token) and the
condition encoder (DINO ViT-S/16 in the seed). Sampling: DDIM 50 steps with classifier-free
guidance against the null (zero) embedding.

On-disk layout (what `from_pretrained` reads and `save_pretrained` writes)::

    RUN/eldm.json                    latent scale, format version
    RUN/vqvae/                       diffusers VQModel (or a CompVis `model.ckpt` of vq-f4)
    RUN/unet/                        diffusers UNet2DConditionModel
    RUN/scheduler/                   diffusers DDIMScheduler config (the training betas)
    RUN/condition_projection/        config.json + safetensors of the Linear emb_dim -> cross_attention_dim
    RUN/encoder/                     encoder.json + the encoder's native checkpoint
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
    VQModel,
)
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from PIL import Image
from torch import nn

from genview.generator.base import (
    ViewGenerator,
    WeightsInfo,
    WeightsNotFoundError,
    read_random_marker,
    sha256_files,
)
from genview.generator.builtin import ELDM
from genview.generator.encoders import ConditionEncoder
from genview.generator.seeding import torch_generator

ELDM_JSON = "eldm.json"
FORMAT_VERSION = 1
SUBFOLDERS = ("vqvae", "unet", "scheduler", "condition_projection", "encoder")

#: Gen-SIS settings per domain (Sec. 9.5.2): guidance 6 on ImageNet, 1.75 on pathology, where
#: alpha is drawn from {0.2, 0.4, 0.6, 0.8}; ImageNet training used alpha = 0.5.
GUIDANCE_PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {"guidance_scale": 6.0, "alphas": [0.5]},
    "pathology": {"guidance_scale": 1.75, "alphas": [0.2, 0.4, 0.6, 0.8]},
}

#: The LDM noise schedule (configs/latent-diffusion/*-ldm-vq-4.yaml: linear_start 0.0015,
#: linear_end 0.0195, 1000 steps; LDM's "linear" is linear in sqrt(beta) = diffusers'
#: "scaled_linear"). DDIM as LDM samples it: alphas_prev[0] = alphas_cumprod[0]
#: (set_alpha_to_one False) and timesteps 1, 21, ..., 981 for 50 steps (leading + offset 1).
LDM_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0015,
    "beta_end": 0.0195,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}

#: Sampler names accepted by the `scheduler` parameter.
SCHEDULERS: dict[str, tuple[type, dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "dpm-solver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "ddpm": (DDPMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-ancestral": (EulerAncestralDiscreteScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
}

#: VQ-f4 of LDM (models/first_stage_models/vq-f4: ch 128, ch_mult [1,2,4], 2 res blocks, no
#: attention outside the mid block, z 3, 8192 codes): 256 px -> 3x64x64 latents.
VQ_PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": [128, 256, 512],
        "layers_per_block": 2,
        "latent_channels": 3,
        "num_vq_embeddings": 8192,
        "norm_num_groups": 32,
        "sample_size": 256,
        "scaling_factor": 1.0,
    },
    "tiny": {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": [8, 16, 16],
        "layers_per_block": 1,
        "latent_channels": 3,
        "num_vq_embeddings": 64,
        "norm_num_groups": 4,
        "sample_size": 32,
        "scaling_factor": 1.0,
    },
}

#: UNet of LDM's VQ-f4 256 px config (ffhq-ldm-vq-4.yaml: model_channels 224, channel_mult
#: [1,2,3,4], 2 res blocks, attention at downsampling 2/4/8, 32 channels per head) with the
#: spatial transformer of LDM's conditional configs (depth 1, context 512). The seed does not
#: publish its UNet widths, so this is the closest published LDM. `attention_head_dim` is
#: diffusers' legacy name for the number of heads: channels / 32.
UNET_PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "sample_size": 64,
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [224, 448, 672, 896],
        "layers_per_block": 2,
        "attention_head_dim": [7, 14, 21, 28],
        "cross_attention_dim": 512,
        "transformer_layers_per_block": 1,
        "norm_num_groups": 32,
    },
    "tiny": {
        "sample_size": 8,
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "attention_head_dim": [2, 2],
        "cross_attention_dim": 32,
        "transformer_layers_per_block": 1,
        "norm_num_groups": 8,
    },
}
#: Condition encoder per model preset: DINO ViT-S/16 as in Gen-SIS; the tiny one has the same keys.
ENCODER_PRESETS = {"full": "vits16", "tiny": "tiny"}


class ConditionProjection(ModelMixin, ConfigMixin):
    """Map a condition embedding [N, D] to one cross-attention context token [N, 1, C] (optionally L2-normalising first)."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, embedding_dim: int, cross_attention_dim: int, normalize: bool = True):
        super().__init__()
        self.proj = nn.Linear(embedding_dim, cross_attention_dim)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Return the context token; a zero row (the null condition) stays zero through the normalisation."""
        if self.config.normalize:
            embeddings = F.normalize(embeddings, dim=-1)
        return self.proj(embeddings).unsqueeze(1)


# ---------------------------------------------------------------------------------------------
# CompVis (taming / latent-diffusion) VQModel checkpoints -> diffusers VQModel.
# Key scheme verified against diffusers' convert_ldm_vae_checkpoint (same first-stage naming).
# ---------------------------------------------------------------------------------------------

#: Keys of a CompVis first-stage checkpoint that are not part of the inference model.
_COMPVIS_IGNORED_PREFIXES = ("loss.", "model_ema.")
_ATTN_RENAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


class CompVisConversionError(ValueError):
    """Raised when a CompVis VQ checkpoint has keys this converter cannot map (listed in the message)."""


def _compvis_key(key: str, num_levels: int) -> str | None:
    """Return the diffusers VQModel key of one CompVis key, or None when no rule maps it."""
    if key in ("quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight", "post_quant_conv.bias", "quantize.embedding.weight"):
        return key
    m = re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)", key)
    if m:
        return key
    m = re.fullmatch(r"(encoder|decoder)\.norm_out\.(weight|bias)", key)
    if m:
        return f"{m[1]}.conv_norm_out.{m[2]}"
    m = re.fullmatch(r"(encoder|decoder)\.mid\.block_([12])\.(.+)", key)
    if m:
        return f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{m[3].replace('nin_shortcut', 'conv_shortcut')}"
    m = re.fullmatch(r"(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)", key)
    if m:
        return f"{m[1]}.mid_block.attentions.0.{_ATTN_RENAMES[m[2]]}.{m[3]}"
    m = re.fullmatch(r"encoder\.down\.(\d+)\.block\.(\d+)\.(.+)", key)
    if m:
        return f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{m[3].replace('nin_shortcut', 'conv_shortcut')}"
    m = re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)", key)
    if m:
        return f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}"
    # The CompVis decoder numbers its up levels from the highest resolution; diffusers from the lowest.
    m = re.fullmatch(r"decoder\.up\.(\d+)\.block\.(\d+)\.(.+)", key)
    if m:
        level = num_levels - 1 - int(m[1])
        return f"decoder.up_blocks.{level}.resnets.{m[2]}.{m[3].replace('nin_shortcut', 'conv_shortcut')}"
    m = re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)", key)
    if m:
        return f"decoder.up_blocks.{num_levels - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}"
    return None


def compvis_vq_config(state: dict[str, torch.Tensor], sample_size: int = 256) -> dict[str, Any]:
    """Infer the diffusers VQModel config from a CompVis VQ state dict's shapes."""
    levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.down.")})
    blocks = {int(k.split(".")[4]) for k in state if k.startswith("encoder.down.0.block.")}
    channels = [int(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) for i in levels]
    return {
        "in_channels": int(state["encoder.conv_in.weight"].shape[1]),
        "out_channels": int(state["decoder.conv_out.weight"].shape[0]),
        "down_block_types": ["DownEncoderBlock2D"] * len(levels),
        "up_block_types": ["UpDecoderBlock2D"] * len(levels),
        "block_out_channels": channels,
        "layers_per_block": len(blocks),
        "latent_channels": int(state["encoder.conv_out.weight"].shape[0]),
        "vq_embed_dim": int(state["quantize.embedding.weight"].shape[1]),
        "num_vq_embeddings": int(state["quantize.embedding.weight"].shape[0]),
        "norm_num_groups": 32,  # taming's Normalize is GroupNorm(32) everywhere
        "sample_size": sample_size,
        "scaling_factor": 1.0,  # LDM trains on VQ latents unscaled
    }


def convert_compvis_vq_state_dict(checkpoint: dict[str, Any], source: str = "checkpoint") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return (diffusers VQModel config, state dict) of a CompVis VQ `model.ckpt` state dict; strict."""
    state = checkpoint.get("state_dict", checkpoint)
    if any(k.startswith("first_stage_model.") for k in state):  # a whole LDM checkpoint: take its first stage
        state = {k[len("first_stage_model.") :]: v for k, v in state.items() if k.startswith("first_stage_model.")}
    state = {k: v for k, v in state.items() if not k.startswith(_COMPVIS_IGNORED_PREFIXES)}
    for required in ("encoder.conv_in.weight", "decoder.conv_out.weight", "quantize.embedding.weight"):
        if required not in state:
            raise CompVisConversionError(f"{source} has no {required}: not a CompVis VQ autoencoder checkpoint")
    config = compvis_vq_config(state)
    num_levels = len(config["block_out_channels"])
    converted, unmapped = {}, []
    for key, value in state.items():
        new = _compvis_key(key, num_levels)
        if new is None:
            unmapped.append(key)
            continue
        if ".attentions.0.to_" in new and new.endswith("weight") and value.ndim == 4:
            value = value[:, :, 0, 0]  # CompVis attention uses 1x1 convs; diffusers uses linears
        converted[new] = value
    with torch.device("meta"):
        expected = VQModel(**config).state_dict()
    missing = sorted(set(expected) - set(converted))
    if unmapped or missing:
        raise CompVisConversionError(
            f"{source}: cannot convert to a diffusers VQModel; unmapped CompVis keys: {sorted(unmapped)}; "
            f"diffusers keys left without a value: {missing}"
        )
    for key, value in converted.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CompVisConversionError(
                f"{source}: {key} has shape {tuple(value.shape)}, the inferred VQModel expects {tuple(expected[key].shape)}"
            )
    return config, converted


def load_compvis_vq(path: str | os.PathLike, sample_size: int = 256) -> VQModel:
    """Load a CompVis vq-f4 `model.ckpt` (Lightning checkpoint of the taming VQModel) as a diffusers VQModel."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsNotFoundError(f"VQ checkpoint {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - the unpickler's failures are many; the file is at fault
        raise CompVisConversionError(
            f"cannot read {path} with torch.load(weights_only=True): {exc}. Convert it once to a diffusers "
            "VQModel folder in a trusted environment, or re-save its state_dict alone."
        ) from None
    config, state = convert_compvis_vq_state_dict(checkpoint, str(path))
    config["sample_size"] = sample_size
    model = VQModel(**config)
    model.load_state_dict(state, strict=True)
    return model


def load_vqvae(path: str | os.PathLike) -> VQModel:
    """Load a VQ autoencoder from a diffusers VQModel folder, a folder holding model.ckpt, or a CompVis .ckpt file."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        return VQModel.from_pretrained(str(path), local_files_only=True)
    if path.is_dir() and (path / "model.ckpt").is_file():
        return load_compvis_vq(path / "model.ckpt")
    if path.is_file():
        return load_compvis_vq(path)
    raise WeightsNotFoundError(
        f"--vqvae {path}: expected a diffusers VQModel folder (config.json + weights), "
        "a folder holding a CompVis model.ckpt, or the model.ckpt file itself"
    )


# ---------------------------------------------------------------------------------------------
# Building blocks shared by the generator and training.
# ---------------------------------------------------------------------------------------------


def build_vqvae(preset: str) -> VQModel:
    """Return a randomly initialised VQ autoencoder of a preset (under the caller's device context)."""
    return VQModel(**VQ_PRESETS[_check_preset(preset)])


def build_unet(preset: str, sample_size: int | None = None) -> UNet2DConditionModel:
    """Return a randomly initialised UNet of a preset (under the caller's device context); sample_size = latent side."""
    config = dict(UNET_PRESETS[_check_preset(preset)])
    if sample_size is not None:
        config["sample_size"] = int(sample_size)
    return UNet2DConditionModel(**config)


def _check_preset(preset: str) -> str:
    if preset not in UNET_PRESETS:
        raise ValueError(f"unknown eldm preset {preset!r}; known presets: {', '.join(UNET_PRESETS)}")
    return preset


def make_scheduler(name: str, config: dict[str, Any]):
    """Return a fresh sampler `name` built from the training noise schedule `config`."""
    try:
        cls, extra = SCHEDULERS[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}") from None
    return cls.from_config(config, **extra)


def latent_size(vqvae: VQModel, image_size: int) -> int:
    """Return the latent side for `image_size` pixels (one halving per VQ level after the first)."""
    return image_size // 2 ** (len(vqvae.config.block_out_channels) - 1)


def _state_digest(*modules: nn.Module) -> str:
    """Return sha256 over the named tensors of the modules (identifies random preset weights)."""
    digest = hashlib.sha256()
    for index, module in enumerate(modules):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{index}:{name}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _weight_files(path: Path) -> list[Path]:
    """Return the files that make up a saved E-LDM (eldm.json and the component subfolders).

    A training run folder also holds cache/ and checkpoints/; they are not the model and can be
    large, so they are left out of the digest.
    """
    files = [path / ELDM_JSON]
    for sub in SUBFOLDERS:
        files += [p for p in sorted((path / sub).rglob("*")) if p.is_file()]
    return files


# ---------------------------------------------------------------------------------------------
# The generator.
# ---------------------------------------------------------------------------------------------


class ELDMGenerator(ViewGenerator):
    """Gen-SIS E-LDM: views conditioned on an SSL embedding, with CFG against the null embedding.

    Generation params (all JSON-able, recorded in the store spec):
      steps (50), guidance_preset ("imagenet": guidance 6 | "pathology": 1.75 and alphas
      0.2..0.8), guidance_scale (overrides the preset), scheduler ("ddim" | "dpm-solver++" |
      "ddpm" | "euler" | "euler-ancestral" | "unipc"), eta (DDIM only, 0), normalize_embedding
      (read-only: fixed at training; passing the other value is an error), precision ("auto":
      bf16/fp16 autocast on CUDA, fp32 on CPU | "fp32"), compile (torch.compile the UNet on CUDA).
    """

    declaration = ELDM

    @classmethod
    def view_cost(cls, preset: str, encoder_calls: float, params: dict[str, Any]):
        """DINO encoder, UNet x steps (x2 rows with guidance != 1), VQ decoder (`genview.generator.cost`)."""
        from genview.generator.cost import eldm_cost

        return eldm_cost(preset, encoder_calls, params)

    #: From the declaration (genview.generator.builtin.ELDM): one place for names, types and defaults.
    _PARAM_DEFAULTS: dict[str, Any] = ELDM.params.defaults()

    def __init__(
        self,
        vqvae: VQModel,
        unet: UNet2DConditionModel,
        projection: ConditionProjection,
        encoder: ConditionEncoder,
        scheduler_config: dict[str, Any],
        weights: WeightsInfo,
        latent_scale: float = 1.0,
        device: str | torch.device = "cpu",
        **params: Any,
    ):
        unknown = sorted(set(params) - set(self._PARAM_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown eldm params {unknown}; known: {', '.join(sorted(self._PARAM_DEFAULTS))}")
        params = self.check_params(params)
        settings = {**self._PARAM_DEFAULTS, **params}
        if settings["guidance_preset"] not in GUIDANCE_PRESETS:
            raise ValueError(
                f"unknown guidance_preset {settings['guidance_preset']!r}; choose one of {', '.join(GUIDANCE_PRESETS)}"
            )
        if settings["guidance_scale"] is None:
            settings["guidance_scale"] = GUIDANCE_PRESETS[settings["guidance_preset"]]["guidance_scale"]
        trained_norm = bool(projection.config.normalize)
        if settings["normalize_embedding"] is None:
            settings["normalize_embedding"] = trained_norm
        elif bool(settings["normalize_embedding"]) != trained_norm:
            raise ValueError(
                f"normalize_embedding={settings['normalize_embedding']} but this E-LDM was trained with "
                f"normalize_embedding={trained_norm}; it is fixed at training (train_eldm(normalize_embedding=...))"
            )
        if int(settings["steps"]) < 1:
            raise ValueError(f"steps must be at least 1, got {settings['steps']}")
        if float(settings["guidance_scale"]) < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {settings['guidance_scale']}")
        if settings["precision"] not in ("auto", "fp32"):
            raise ValueError(f"precision must be 'auto' or 'fp32', got {settings['precision']!r}")
        make_scheduler(settings["scheduler"], scheduler_config)  # fail now on an unknown name
        _check_compatible(vqvae, unet, projection, encoder)
        self.vqvae = vqvae.eval().requires_grad_(False)
        self.unet = unet.eval().requires_grad_(False)
        self.projection = projection.eval().requires_grad_(False)
        self.encoder = encoder
        self.scheduler_config = dict(scheduler_config)
        self.weights = weights
        self.latent_scale = float(latent_scale)
        self._settings = settings
        self._device = torch.device(device)
        if self._device.type != "meta":
            self.to(self._device)

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cpu", **params: Any) -> "ELDMGenerator":
        """Load an E-LDM folder (layout in the module docstring); strict, errors name --weights."""
        root = Path(path)
        if not root.is_dir():
            raise WeightsNotFoundError(f"--weights {path}: no such E-LDM folder (train one with `genview train eldm`)")
        missing = [name for name in (ELDM_JSON, *SUBFOLDERS) if not (root / name).exists()]
        if missing:
            raise WeightsNotFoundError(
                f"--weights {path}: not an E-LDM folder, missing {', '.join(missing)} "
                f"(expected {ELDM_JSON} and subfolders {', '.join(SUBFOLDERS)})"
            )
        info = json.loads((root / ELDM_JSON).read_text())
        if int(info.get("format_version", 0)) != FORMAT_VERSION:
            raise WeightsNotFoundError(f"--weights {path}: {ELDM_JSON} has format_version {info.get('format_version')}, expected {FORMAT_VERSION}")
        vqvae = load_vqvae(root / "vqvae")
        unet = UNet2DConditionModel.from_pretrained(str(root / "unet"), local_files_only=True)
        projection = ConditionProjection.from_pretrained(str(root / "condition_projection"), local_files_only=True)
        encoder = ConditionEncoder.load(root / "encoder")
        scheduler_config = dict(DDIMScheduler.load_config(str(root / "scheduler")))
        marker = read_random_marker(root)
        weights = WeightsInfo(
            id=str(path),
            sha256=sha256_files(_weight_files(root)),
            random_init=marker is not None,
            preset=(marker or {}).get("preset"),
        )
        return cls(
            vqvae, unet, projection, encoder, scheduler_config, weights,
            latent_scale=float(info.get("latent_scale", 1.0)), device=device, **params,
        )  # fmt: skip

    @classmethod
    def from_preset(cls, preset: str, seed: int = 0, device: str | torch.device = "cpu", **params: Any) -> "ELDMGenerator":
        """Build a random E-LDM: `tiny` (32 px, for tests) or `full` (256 px VQ-f4 LDM + DINO ViT-S/16; use device="meta" to count)."""
        _check_preset(preset)
        device = torch.device(device)
        encoder = ConditionEncoder.dino(ENCODER_PRESETS[preset], seed=seed, device=device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with torch.device(device):
                vqvae = build_vqvae(preset)
                unet = build_unet(preset)
                projection = ConditionProjection(encoder.config["embed_dim"], unet.config.cross_attention_dim, True)
        digest = "" if device.type == "meta" else _state_digest(vqvae, unet, projection, encoder.network)
        weights = WeightsInfo(id=f"preset:{preset}", sha256=digest, random_init=True, preset=preset)
        return cls(vqvae, unet, projection, encoder, LDM_SCHEDULER_CONFIG, weights, device=device, **params)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the folder `from_pretrained` reads (diffusers subfolders, safetensors, native encoder file)."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self.vqvae.save_pretrained(str(root / "vqvae"))
        self.unet.save_pretrained(str(root / "unet"))
        DDIMScheduler.from_config(self.scheduler_config).save_pretrained(str(root / "scheduler"))
        self.projection.save_pretrained(str(root / "condition_projection"))
        self.encoder.save(root / "encoder")
        info = {"format_version": FORMAT_VERSION, "model": self.model_name, "latent_scale": self.latent_scale,
                "image_size": self.image_size}  # fmt: skip
        (root / ELDM_JSON).write_text(json.dumps(info, indent=2) + "\n")

    def to(self, device: str | torch.device) -> "ELDMGenerator":
        """Move every network to `device`; returns self."""
        self._device = torch.device(device)
        for module in (self.vqvae, self.unet, self.projection):
            module.to(self._device)
        self.encoder.to(self._device)
        if self._device.type == "cuda":
            self.unet.to(memory_format=torch.channels_last)
            if self._settings["compile"] and not hasattr(self.unet, "_orig_mod"):
                self.unet = torch.compile(self.unet)
        return self

    # ---- interface ----------------------------------------------------------------------

    @property
    def params(self) -> dict[str, Any]:
        """Generation settings in force (steps, guidance, scheduler, ...), JSON-able."""
        out = {k: self._settings[k] for k in ("steps", "guidance_preset", "guidance_scale", "scheduler", "normalize_embedding")}
        out["steps"] = int(out["steps"])
        out["guidance_scale"] = float(out["guidance_scale"])
        if self._settings["scheduler"] == "ddim":
            out["eta"] = float(self._settings["eta"])
        out["latent_scale"] = self.latent_scale
        return out

    @property
    def default_alphas(self) -> list[float]:
        """Interpolation ratios of the guidance preset (Gen-SIS: 0.5 on ImageNet, 0.2..0.8 on pathology)."""
        return list(GUIDANCE_PRESETS[self._settings["guidance_preset"]]["alphas"])

    @property
    def image_size(self) -> int:
        """Side of the generated images: the UNet's latent side times the VQ downsampling factor."""
        return int(self.unet.config.sample_size) * 2 ** (len(self.vqvae.config.block_out_channels) - 1)

    @property
    def input_side(self) -> int:
        """Side the condition encoder resizes a source's short side to (DINO: 256, then crops 224)."""
        return int(self.encoder.preprocess.resize)

    @property
    def device(self) -> torch.device:
        """Device the networks run on."""
        return self._device

    def embed(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """Return condition embeddings [N, D] (float32, CPU): L2-normalised when normalize_embedding is on, else raw."""
        feats = self.encoder.embed(images)
        return F.normalize(feats, dim=1) if self._settings["normalize_embedding"] else feats

    def _autocast(self):
        if self._device.type == "cuda" and self._settings["precision"] == "auto":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    def context(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Return the cross-attention context [N, 1, C] of condition embeddings (zeros -> the null condition)."""
        # The projection L2-normalises first when the model was trained that way; zeros stay zero.
        return self.projection(embeddings.to(self._device, torch.float32))

    def initial_latents(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Return x_T [B, C, h, w]: row i drawn on the CPU from generators[i] alone."""
        side = int(self.unet.config.sample_size)
        shape = (int(self.unet.config.in_channels), side, side)
        rows = [torch.randn(shape, generator=g) for g in generators]
        return torch.stack(rows).to(self._device)

    @torch.no_grad()
    def generate(self, embeddings: torch.Tensor, seeds: Sequence[int], labels: torch.Tensor | None = None) -> torch.Tensor:
        """Return uint8 [B, 3, S, S] on CPU: DDIM (default) with CFG, row i from embeddings[i] and seeds[i]."""
        if len(seeds) == 0:
            return torch.empty(0, 3, self.image_size, self.image_size, dtype=torch.uint8)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(seeds):
            raise ValueError(f"need [B, D] embeddings and B seeds, got {tuple(embeddings.shape)} and {len(seeds)} seeds")
        if embeddings.shape[1] != self.projection.config.embedding_dim:
            raise ValueError(
                f"embeddings have {embeddings.shape[1]} dims; this E-LDM was trained on "
                f"{self.projection.config.embedding_dim}-d {self.encoder.kind} embeddings"
            )
        guidance = float(self._settings["guidance_scale"])
        scheduler = make_scheduler(self._settings["scheduler"], self.scheduler_config)  # fresh: samplers keep state
        scheduler.set_timesteps(int(self._settings["steps"]), device=self._device)
        generators = [torch_generator(s) for s in seeds]
        step_kwargs: dict[str, Any] = {}
        accepted = inspect.signature(scheduler.step).parameters
        if "generator" in accepted:
            # Stochastic samplers keep drawing row i's noise from row i's generator (CPU, per row).
            step_kwargs["generator"] = generators
        if "eta" in accepted:
            step_kwargs["eta"] = float(self._settings["eta"])
        cond = self.context(embeddings)
        use_cfg = guidance != 1.0
        if use_cfg:
            null = self.context(torch.zeros_like(embeddings, dtype=torch.float32))
            cond = torch.cat([null, cond])
        latents = self.initial_latents(generators) * scheduler.init_noise_sigma
        with self._autocast():
            for t in scheduler.timesteps:
                model_in = torch.cat([latents, latents]) if use_cfg else latents
                model_in = scheduler.scale_model_input(model_in, t)
                eps = self.unet(model_in, t, encoder_hidden_states=cond.to(model_in.dtype)).sample.float()
                if use_cfg:
                    eps_null, eps_cond = eps.chunk(2)
                    eps = eps_null + guidance * (eps_cond - eps_null)
                latents = scheduler.step(eps, t, latents, **step_kwargs).prev_sample
        # Decode in fp32: the VQ codebook lookup (nearest code) is sensitive to reduced precision.
        images = self.vqvae.decode(latents.float() / self.latent_scale).sample
        return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def _check_compatible(vqvae: VQModel, unet: UNet2DConditionModel, projection: ConditionProjection, encoder: ConditionEncoder) -> None:
    """Raise a clear error when the saved parts of an E-LDM do not fit together."""
    if unet.config.in_channels != vqvae.config.latent_channels:
        raise ValueError(
            f"unet in_channels {unet.config.in_channels} != vqvae latent_channels {vqvae.config.latent_channels}"
        )
    if unet.config.cross_attention_dim != projection.config.cross_attention_dim:
        raise ValueError(
            f"unet cross_attention_dim {unet.config.cross_attention_dim} != condition_projection "
            f"cross_attention_dim {projection.config.cross_attention_dim}"
        )
    dim = encoder.config.get("embed_dim")
    if dim is not None and int(dim) != projection.config.embedding_dim:
        raise ValueError(
            f"encoder embeds {dim}-d but condition_projection expects {projection.config.embedding_dim}-d"
        )
