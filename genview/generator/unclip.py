"""Stable unCLIP (Stable Diffusion 2.1 unCLIP) as a view generator, on diffusers' StableUnCLIPImg2ImgPipeline.

The seed paper (000, App. D) made its views with "Stable unCLIP source code", i.e. this diffusers
pipeline, conditioned on the source's CLIP image embedding alone (empty prompt).

The defaults of `UnCLIPSettings` are NOT what the seed ran. They are the pipeline's own ``__call__``
defaults (20 steps, guidance 10, noise_level 0) on the checkpoint's own DDIM schedule, bf16 on CUDA,
at whatever checkpoint ``--weights`` names. The seed's released script ran
``stabilityai/stable-diffusion-2-1-unclip-small`` (ViT-L, 768-d) in fp16, DDIM rebuilt with
``rescale_betas_zero_snr=True`` and ``timestep_spacing="trailing"``, eta 0, 10 steps, guidance 10,
noise_level 0, on sources centre-cropped to 224, views resized to 224: the ``genssl-unclip`` recipe
(`genview recipes show genssl-unclip`) carries exactly those values.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from genview.generator.base import (
    ViewGenerator,
    WeightsInfo,
    WeightsNotFoundError,
    read_random_marker,
    sha256_files,
    write_random_marker,
)
from genview.generator.builtin import UNCLIP
from genview.generator.seeding import torch_generator

PIPELINE_CLASS = "StableUnCLIPImg2ImgPipeline"
#: tiny: tests; full: stable-diffusion-2-1-unclip (OpenCLIP ViT-H, 1024-d); small: the -small checkpoint
#: (OpenAI CLIP ViT-L/14, 768-d), which is what the first seed's released script ran.
PRESETS = ("tiny", "full", "small")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# ddim: the sampler of Stability's unCLIP source, kept by diffusers' port (PR #2297), and the seed's script's.
# dpm-solver++: a second-order multistep solver that needs fewer steps. euler: Euler discrete (its
# init_noise_sigma is not 1, so it also guards how supplied latents are scaled).
# All are rebuilt from the checkpoint's own scheduler config (betas, v-prediction).
SCHEDULERS = ("ddim", "dpm-solver++", "euler")
#: diffusers' timestep_spacing values; None keeps the checkpoint's.
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
# Hub ids look like "owner/name"; anything else that does not exist on disk is a missing directory.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Random presets get an offline tokenizer: single bytes (word-inner and word-final) plus the two CLIP
# specials. Any text tokenises (byte by byte, no merges); unCLIP only ever encodes the empty prompt,
# for which only BOS / EOS / padding matter. Real checkpoints bring their own 49,408-token tokenizer.
_BOS_ID, _EOS_ID = 512, 513
_VOCAB_SIZE = 514


@dataclasses.dataclass(frozen=True)
class UnCLIPSettings:
    """Sampling settings of one unCLIP generator; JSON-able, recorded in the store's spec.

    Defaults are StableUnCLIPImg2ImgPipeline.__call__'s and the checkpoint's schedule, not the first
    seed's settings (those are the ``genssl-unclip`` recipe: 10 steps, zero-SNR betas, trailing spacing).
    """

    noise_level: int = 0  # no extra noise on the image embedding (diffusers default; model card: 0..1000)
    guidance_scale: float = 10.0  # diffusers default; > 1 turns classifier-free guidance on (2 UNet rows/view)
    num_inference_steps: int = 20  # diffusers default (the seed's script: 10)
    scheduler: str = "ddim"  # rebuilt from the checkpoint's scheduler config (see SCHEDULERS)
    eta: float = 0.0  # DDIM's eta (diffusers default; the seed's --ddim_eta 0): 0 = deterministic
    # The seed's script rebuilt DDIM with rescale_betas_zero_snr=True (zero terminal SNR, v-prediction).
    rescale_betas_zero_snr: bool = False
    timestep_spacing: str | None = None  # None = the checkpoint's ("leading" for SD 2.1); the seed: "trailing"
    # Centre-crop the long edge and resize to this side before the CLIP processor (the seed: 224,
    # its CenterCropLongEdge + Resize(224)); None hands the decoded source to the CLIP processor as is.
    source_crop: int | None = None
    # None = the UNet's native size: sample_size 96 x VAE factor 8 = 768 px for SD 2.1 unCLIP (the seed's size).
    image_size: int | None = None
    # "auto": bfloat16 on CUDA where supported (fp16 otherwise), float32 on CPU.
    dtype: str = "auto"
    compile: bool = False  # torch.compile the UNet (CUDA only)

    def __post_init__(self) -> None:
        """Reject settings that cannot work, naming the setting."""
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unCLIP scheduler={self.scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ValueError(f"unCLIP dtype={self.dtype!r}: choose auto, {', '.join(DTYPES)}")
        if int(self.num_inference_steps) < 1:
            raise ValueError(f"unCLIP num_inference_steps={self.num_inference_steps}: must be >= 1")
        if float(self.guidance_scale) < 0:
            raise ValueError(f"unCLIP guidance_scale={self.guidance_scale}: must be >= 0")
        if int(self.noise_level) < 0:
            raise ValueError(f"unCLIP noise_level={self.noise_level}: must be >= 0")
        if not 0.0 <= float(self.eta) <= 1.0:
            raise ValueError(f"unCLIP eta={self.eta}: must be in [0, 1]")
        if self.timestep_spacing is not None and self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(
                f"unCLIP timestep_spacing={self.timestep_spacing!r}: choose one of {', '.join(TIMESTEP_SPACINGS)}"
            )
        if self.source_crop is not None and int(self.source_crop) < 8:
            raise ValueError(f"unCLIP source_crop={self.source_crop}: must be >= 8 (or None)")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "UnCLIPSettings":
        """Build settings from keyword params; unknown names are an error that lists the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown unCLIP param(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**UNCLIP.check_params(params))


# --------------------------------------------------------------------------------------------------
# Preset configurations
# --------------------------------------------------------------------------------------------------

def _preset_configs(preset: str) -> dict[str, dict[str, Any]]:
    """Return the constructor configs of every component of a preset."""
    if preset in ("full", "small"):
        # stabilityai/stable-diffusion-2-1-unclip (the "-h" model; "small": -unclip-small, the "-l" model). UNet/VAE from the original LDM config
        # (Stability-AI/stablediffusion configs/stable-diffusion/v2-1-stable-unclip-h-inference.yaml:
        # model_channels 320, channel_mult [1,2,4,4], attention_resolutions [4,2,1], num_res_blocks 2,
        # num_head_channels 64, context_dim 1024, adm_in_channels 2048, image_size 96, v-parameterization,
        # VAE ch 128 ch_mult [1,2,4,4]) mapped the way diffusers' create_unet_diffusers_config_from_ldm does.
        # Text encoder: OpenCLIP ViT-H/14 text tower, penultimate layer => 23 layers (as in SD 2.x).
        # Image encoder: OpenCLIP ViT-H/14 vision tower (1280 wide, 32 layers, patch 14, 1024-d projection).
        # "small" (v2-1-stable-unclip-l-inference.yaml): the same UNet, VAE and text encoder with
        # adm_in_channels 1536, and OpenAI CLIP ViT-L/14's vision tower (1024 wide, 24 layers, 16 heads,
        # patch 14, quick_gelu, 768-d projection) as image encoder.
        if preset == "full":
            embed_dim = 1024
            image_encoder = dict(
                hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=embed_dim, hidden_act="gelu", layer_norm_eps=1e-5,
            )
        else:
            embed_dim = 768
            image_encoder = dict(
                hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=embed_dim, hidden_act="quick_gelu", layer_norm_eps=1e-5,
            )
        return {
            "image_encoder": image_encoder,
            "text_encoder": dict(
                hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                max_position_embeddings=77, vocab_size=49408, projection_dim=512, hidden_act="gelu",
                layer_norm_eps=1e-5, bos_token_id=_BOS_ID, eos_token_id=_EOS_ID, pad_token_id=_EOS_ID,
            ),
            "unet": dict(
                sample_size=96, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=[320, 640, 1280, 1280],
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
                attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True,
                class_embed_type="projection", projection_class_embeddings_input_dim=2 * embed_dim,
                # SD 2.x v-models upcast attention to fp32 for fp16 safety; it changes neither parameters nor FLOPs.
                upcast_attention=True,
            ),
            "vae": dict(
                in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=768,
                block_out_channels=[128, 256, 512, 512],
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                scaling_factor=0.18215,
            ),
            "feature_extractor": dict(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
            "embed_dim": {"value": embed_dim},
        }
    if preset == "tiny":
        # Small enough that a test generates in milliseconds: 16x16 latents, 32 px images, 32-d embeddings.
        embed_dim = 32
        return {
            "image_encoder": dict(
                hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                image_size=32, patch_size=4, projection_dim=embed_dim,
            ),
            "text_encoder": dict(
                hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=77, vocab_size=_VOCAB_SIZE, projection_dim=32,
                bos_token_id=_BOS_ID, eos_token_id=_EOS_ID, pad_token_id=_EOS_ID,
            ),
            "unet": dict(
                sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                block_out_channels=[32, 64], down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], attention_head_dim=[2, 4],
                cross_attention_dim=32, use_linear_projection=True, class_embed_type="projection",
                projection_class_embeddings_input_dim=2 * embed_dim, norm_num_groups=16,
            ),
            "vae": dict(
                in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, sample_size=32,
                block_out_channels=[16, 32], down_block_types=["DownEncoderBlock2D"] * 2,
                up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=16,
            ),
            "feature_extractor": dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
            "embed_dim": {"value": embed_dim},
        }
    raise ValueError(f"unknown unCLIP preset {preset!r}; known: {', '.join(PRESETS)}")


def _byte_alphabet() -> list[str]:
    """Return the 256 printable characters byte-level BPE (GPT-2 / CLIP) uses for the 256 byte values."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars



def _build_tokenizer():
    """Build a CLIPTokenizer offline from a byte-level vocab.json and an empty merges.txt."""
    from transformers import CLIPTokenizer

    alphabet = _byte_alphabet()
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": 256 + i for i, ch in enumerate(alphabet)})
    vocab.update({"<|startoftext|>": _BOS_ID, "<|endoftext|>": _EOS_ID})
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        Path(tmp, "merges.txt").write_text("#version: 0.2\n")
        # 77 = CLIP's context length; the pipeline pads the (empty) prompt to it.
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=77)


def _build_pipeline(preset: str, seed: int, device: torch.device):
    """Instantiate a randomly initialised pipeline of a preset (on `device`; "meta" allocates nothing)."""
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    cfg = _preset_configs(preset)
    build_device = device if device.type == "meta" else torch.device("cpu")
    with torch.random.fork_rng(devices=[]), torch.device(build_device):
        torch.manual_seed(int(seed))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg["image_encoder"]))
        text_encoder = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(**cfg["vae"])
        image_normalizer = StableUnCLIPImageNormalizer(embedding_dim=cfg["embed_dim"]["value"])
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(**cfg["feature_extractor"]),
        image_encoder=image_encoder.eval(),
        image_normalizer=image_normalizer.eval(),
        # The embedding-noising schedule of the unCLIP configs (noise_aug_config: squaredcos_cap_v2, 1000 steps).
        image_noising_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"),
        tokenizer=_build_tokenizer(),
        text_encoder=text_encoder.eval(),
        unet=unet.eval(),
        # SD 2.1's DDIM: linear_start/end 0.00085/0.012 (scaled_linear), v-prediction.
        scheduler=DDIMScheduler(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
        ),
        vae=vae.eval(),
    )
    if build_device != device:
        pipe.to(device)
    return pipe


# --------------------------------------------------------------------------------------------------
# Locating weights
# --------------------------------------------------------------------------------------------------

def _hf_cache_dir() -> str:
    """Return the Hugging Face hub cache directory in force (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _resolve_weights_dir(path: str) -> Path:
    """Return the local diffusers directory for a path or a cached hub id; never touches the network."""
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "model_index.json").is_file():
            raise WeightsNotFoundError(
                f"--weights {path}: not a diffusers pipeline directory (no model_index.json); expected a "
                f"{PIPELINE_CLASS} saved with save_pretrained, a hub snapshot, or `genview models init unclip`"
            )
        return local
    hint = (
        "Pass --weights DIR (a diffusers StableUnCLIPImg2ImgPipeline directory), put the snapshot in the "
        "Hugging Face cache on a connected machine (e.g. `huggingface-cli download "
        "stabilityai/stable-diffusion-2-1-unclip`), or make random test weights with "
        "`genview models init unclip --preset tiny --out DIR`."
    )
    if not _HUB_ID.match(path):
        raise WeightsNotFoundError(f"--weights {path}: no such directory. {hint}")
    from huggingface_hub import snapshot_download

    try:
        # local_files_only: the cache is read, the hub never contacted (this machine has no hub).
        return Path(snapshot_download(repo_id=path, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, OSError: all mean "not here"
        raise WeightsNotFoundError(
            f"--weights {path}: no such directory, and hub id {path!r} is not in the local Hugging Face "
            f"cache {_hf_cache_dir()} (set by HF_HOME / HF_HUB_CACHE; nothing is downloaded). {hint}"
        ) from exc


def diffusers_component_files(directory: Path) -> list[Path]:
    """Return model_index.json and every file of the components it lists (what from_pretrained reads)."""
    index = json.loads((directory / "model_index.json").read_text())
    files = [directory / "model_index.json"]
    for name in sorted(k for k in index if not k.startswith("_")):
        sub = directory / name
        if sub.is_dir():
            files.extend(p for p in sorted(sub.rglob("*")) if p.is_file())
    return files


def _weights_variant(directory: Path) -> str | None:
    """Return "fp16" when the UNet is only present as an fp16 variant (a common hub download), else None."""
    unet = directory / "unet"
    plain = [unet / f"diffusion_pytorch_model.{ext}" for ext in ("safetensors", "bin")]
    if any(p.is_file() for p in plain):
        return None
    return "fp16" if any((unet / f"diffusion_pytorch_model.fp16.{ext}").is_file() for ext in ("safetensors", "bin")) else None


def pipeline_digest(pipe, preset: str, seed: int, model: str = "unclip",
                    components: Sequence[str] = ("image_encoder", "image_normalizer", "text_encoder", "unet", "vae")) -> str:
    """Return a sha256 over a pipeline's tensors (or, on meta, where tensors carry no values, their shapes)."""
    import hashlib

    digest = hashlib.sha256(f"{model}:{preset}:{seed}".encode())
    for name in components:
        module = getattr(pipe, name)
        for key, tensor in sorted(module.state_dict().items()):
            digest.update(f"{name}.{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            if tensor.device.type != "meta":
                digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------------

class UnCLIPGenerator(ViewGenerator):
    """Stable unCLIP views: SD 2.1 unCLIP denoises from the source's (optionally noised) CLIP image embedding.

    Embedding contract: ``embed`` returns the *raw* CLIP image embeddings ``image_embeds`` [N, D]
    (D = 1024 for ViT-H, 768 for ViT-L, 32 for the tiny preset), not unit vectors. unCLIP was trained
    on raw embeddings (the image normaliser's mean/std and the UNet's class projection both expect their
    scale), and the pipeline does not normalise ``image_embeds`` before noising them, so normalising
    would change every view. Similarity between a view and its source is a cosine, which is
    scale-free, so the same raw embeddings serve both uses: normalise them (``F.normalize``) before
    a dot product, or use ``UnCLIPGenerator.similarity``.
    """

    declaration = UNCLIP

    @classmethod
    def view_cost(cls, preset: str, encoder_calls: float, params: dict[str, Any]):
        """CLIP image encoder, UNet x steps (x2 rows with guidance), VAE decoder (`genview.generator.cost`)."""
        from genview.generator.cost import unclip_cost

        return unclip_cost(preset, encoder_calls, params)

    def __init__(self, pipe, settings: UnCLIPSettings, weights: WeightsInfo, device: torch.device,
                 random_marker: dict[str, Any] | None = None) -> None:
        """Wrap a loaded StableUnCLIPImg2ImgPipeline (already on `device`) with resolved settings."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

        self.pipe = pipe
        self.weights = weights
        self._device = device
        self._random_marker = random_marker
        self._settings = settings
        self._dtype = resolve_diffusers_dtype(settings.dtype, device)
        pipe.set_progress_bar_config(disable=True)

        # One scheduler per name, built from the checkpoint's own schedule (betas, v-prediction), with the
        # seed's optional overrides (zero-terminal-SNR betas, trailing spacing) when asked for.
        base = dict(pipe.scheduler.config)
        overrides: dict[str, Any] = {}
        if settings.rescale_betas_zero_snr:
            overrides["rescale_betas_zero_snr"] = True
        if settings.timestep_spacing is not None:
            overrides["timestep_spacing"] = settings.timestep_spacing
        if settings.scheduler == "ddim":
            pipe.scheduler = DDIMScheduler.from_config(base, **overrides)
        elif settings.scheduler == "euler":
            pipe.scheduler = EulerDiscreteScheduler.from_config(base, **overrides)
        else:
            pipe.scheduler = DPMSolverMultistepScheduler.from_config(
                base, algorithm_type="dpmsolver++", solver_order=2, **overrides
            )

        _pin_supplied_latents(pipe)
        limit = pipe.image_noising_scheduler.config.num_train_timesteps
        if not 0 <= int(settings.noise_level) < limit:
            raise ValueError(f"unCLIP noise_level={settings.noise_level}: must be in [0, {limit - 1}]")
        native = int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
        self._image_size = int(settings.image_size or native)
        # Latents must survive the UNet's downsamplings (VAE factor x 2^(levels-1)); the pipeline wants x8.
        multiple = math.lcm(8, pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1))
        if self._image_size <= 0 or self._image_size % multiple:
            raise ValueError(f"unCLIP image_size={settings.image_size}: must be a positive multiple of {multiple}")

        if device.type == "cuda":
            from diffusers.models.attention_processor import AttnProcessor2_0

            pipe.unet.set_attn_processor(AttnProcessor2_0())  # SDPA (flash / memory-efficient kernels)
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
            if hasattr(pipe.vae, "enable_slicing"):
                pipe.vae.enable_slicing()  # decode one image at a time: same output, lower peak memory
            if settings.compile:
                pipe.unet = torch.compile(pipe.unet, fullgraph=False)
        self._empty_prompt: torch.Tensor | None = None

    # ---- construction ----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cpu", **params: Any) -> "UnCLIPGenerator":
        """Load a diffusers StableUnCLIPImg2ImgPipeline directory, or a hub id from the local HF cache only."""
        from diffusers import StableUnCLIPImg2ImgPipeline

        settings = UnCLIPSettings.from_params(params)
        device = torch.device(device)
        directory = _resolve_weights_dir(str(path))
        index = json.loads((directory / "model_index.json").read_text())
        missing = [c for c in ("image_encoder", "feature_extractor", "image_normalizer", "unet", "vae") if c not in index]
        if missing:
            raise WeightsNotFoundError(
                f"--weights {path}: a {index.get('_class_name', 'diffusers')} directory without {', '.join(missing)}; "
                f"unCLIP views need a {PIPELINE_CLASS} (e.g. stabilityai/stable-diffusion-2-1-unclip)"
            )
        dtype = resolve_diffusers_dtype(settings.dtype, device)
        # float32 is diffusers' default; naming a dtype only for half precision keeps older and newer
        # diffusers (torch_dtype vs dtype) both quiet on the CPU path.
        extra = {} if dtype == torch.float32 else {"torch_dtype": dtype}
        pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(
            str(directory), local_files_only=True, variant=_weights_variant(directory), **extra
        )
        pipe.to(device)
        marker = read_random_marker(directory)
        weights = WeightsInfo(
            id=str(path),
            sha256=sha256_files(diffusers_component_files(directory)),
            random_init=marker is not None,
            preset=marker.get("preset") if marker else None,
        )
        return cls(pipe, settings, weights, device, random_marker=marker)

    @classmethod
    def from_preset(cls, preset: str, seed: int = 0, device: str | torch.device = "cpu", **params: Any) -> "UnCLIPGenerator":
        """Build a randomly initialised unCLIP of a preset: ``tiny`` (tests) or ``full`` (SD 2.1 unCLIP-H sizes).

        ``device="meta"`` allocates no memory (for parameter and FLOP counting); the full preset on a real
        device allocates ~1.9 B parameters, so only ask for that on purpose.
        """
        settings = UnCLIPSettings.from_params(params)
        device = torch.device(device)
        pipe = _build_pipeline(preset, seed, device)
        dtype = resolve_diffusers_dtype(settings.dtype, device)
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
        weights = WeightsInfo(
            id=f"preset:{preset}", sha256=pipeline_digest(pipe, preset, seed), random_init=True, preset=preset
        )
        marker = {"model": cls.model_name, "preset": preset, "seed": int(seed)}
        return cls(pipe, settings, weights, device, random_marker=marker)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the pipeline in diffusers format (what `from_pretrained` reads); random weights keep their marker."""
        if self._device.type == "meta":
            raise ValueError("a meta-device unCLIP (for counting only) has no weights to save; build it on cpu")
        self.pipe.save_pretrained(str(path), safe_serialization=True)
        tokenizer_dir = Path(path) / "tokenizer"
        backend = getattr(self.pipe.tokenizer, "backend_tokenizer", None)
        if backend is not None and not (tokenizer_dir / "vocab.json").exists():
            # transformers 5 saves only tokenizer.json; the hub's unCLIP repos (and transformers 4's
            # CLIPTokenizer) also carry vocab.json + merges.txt, so write them too.
            backend.model.save(str(tokenizer_dir))
        if self._random_marker is not None:
            m = self._random_marker
            write_random_marker(path, m.get("model", self.model_name), m.get("preset") or "unknown", int(m.get("seed", 0)))

    # ---- properties ------------------------------------------------------------------------------

    @property
    def params(self) -> dict[str, Any]:
        """Sampling settings in force (defaults resolved), JSON-able."""
        out = dataclasses.asdict(self._settings)
        out.update(image_size=self._image_size, dtype=dtype_name(self._dtype), compile=bool(
            self._settings.compile and self._device.type == "cuda"))
        out["guidance_scale"] = float(out["guidance_scale"])
        out["eta"] = float(out["eta"])
        out["rescale_betas_zero_snr"] = bool(out["rescale_betas_zero_snr"])
        # The spacing in force, resolved from the checkpoint when not overridden.
        out["timestep_spacing"] = self.pipe.scheduler.config.get("timestep_spacing", out["timestep_spacing"])
        out["noise_level"] = int(out["noise_level"])
        out["num_inference_steps"] = int(out["num_inference_steps"])
        return out

    @property
    def image_size(self) -> int:
        """Side of the square views."""
        return self._image_size

    @property
    def input_side(self) -> int:
        """Side the source is resized to before CLIP: source_crop if set, else the CLIP processor's crop (224)."""
        if self._settings.source_crop is not None:
            return int(self._settings.source_crop)
        crop = self.pipe.feature_extractor.crop_size  # a dict or a SizeDict, depending on transformers
        return int(crop if isinstance(crop, int) else crop["height"])

    @property
    def device(self) -> torch.device:
        """Device the pipeline runs on."""
        return self._device

    @property
    def embedding_dim(self) -> int:
        """Width D of the CLIP image embeddings `embed` returns."""
        return int(self.pipe.image_encoder.config.projection_dim)

    @property
    def guided(self) -> bool:
        """Whether classifier-free guidance is on (the pipeline's rule: guidance_scale > 1)."""
        return float(self._settings.guidance_scale) > 1.0

    # ---- the generator surface -------------------------------------------------------------------

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """Return raw CLIP image embeddings [N, D] (float32, CPU): the conditioning unCLIP expects (see class doc)."""
        return clip_image_embeds(self.pipe, images, self._device, self._settings.source_crop)

    @staticmethod
    def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Return the row-wise cosine similarity of two [N, D] embedding batches."""
        return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)

    @torch.inference_mode()
    def generate(
        self,
        embeddings: torch.Tensor,
        seeds: Sequence[int],
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return uint8 views [B, 3, S, S] (CPU); row i conditioned on raw embeddings[i], noise from seeds[i] only.

        ``labels`` is ignored (unCLIP is not class-conditional).
        """
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"unCLIP expects embeddings [B, {self.embedding_dim}], got {tuple(embeddings.shape)}")
        if len(seeds) != embeddings.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for {embeddings.shape[0]} embeddings: need one seed per row")
        batch = embeddings.shape[0]
        if batch == 0:
            return torch.zeros(0, 3, self._image_size, self._image_size, dtype=torch.uint8)
        # The whole (source x view) batch runs at once on every device: a row's noise and condition do
        # not depend on its batch, its pixels may move by a level (kernels round differently per batch
        # size). Byte-identical views whatever the batch: run rows one at a time (the engine's --exact).
        return self._generate_rows(embeddings, seeds)

    def _generate_rows(self, embeddings: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """Run the pipeline once for a group of rows; see `generate`."""
        pipe, s = self.pipe, self._settings
        batch = embeddings.shape[0]
        # Row i's noise comes from its own CPU generator, drawn in float32 so every device and dtype starts
        # from the same numbers: first its latents (here), then its embedding noise (drawn by the pipeline's
        # noise_image_embeddings, which calls randn_tensor with the list of generators: one draw per row,
        # on CPU). DDIM (eta=0) and DPM-Solver++ draw nothing further. So a view does not depend on its batch.
        generators = [torch_generator(seed) for seed in seeds]
        side = self._image_size // pipe.vae_scale_factor
        shape = (1, pipe.unet.config.in_channels, side, side)
        latents = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
        # x_T = N(0, I) * init_noise_sigma (1 for DDIM / DPM++, ~14.6 for Euler on SD 2.1), applied here once.
        # Whether the pipeline scales supplied latents again depends on the diffusers version (older ones
        # always call prepare_latents, which multiplies; 0.42 skips it when latents are given), so
        # `_pin_supplied_latents` makes prepare_latents pass supplied latents through unchanged.
        latents = (latents * pipe.scheduler.init_noise_sigma).to(device=self._device, dtype=self._dtype)

        prompt = self._empty_prompt_embeds().expand(batch, -1, -1)
        images = pipe(
            image_embeds=embeddings.to(device=self._device, dtype=self._dtype),
            # unCLIP conditions on the image alone: the empty prompt, encoded once per model; the unguided
            # branch uses the same empty prompt with a zero image embedding (the pipeline's CFG rule).
            prompt_embeds=prompt,
            negative_prompt_embeds=prompt,
            height=self._image_size,
            width=self._image_size,
            num_inference_steps=int(s.num_inference_steps),
            guidance_scale=float(s.guidance_scale),
            eta=float(s.eta),  # used by DDIM only; with eta > 0 its noise comes from the rows' generators
            noise_level=int(s.noise_level),
            generator=generators,
            latents=latents,
            output_type="pt",
        ).images
        return (images.float() * 255.0).round().clamp(0, 255).to(torch.uint8).cpu()

    def _empty_prompt_embeds(self) -> torch.Tensor:
        """Return the text encoding of the empty prompt [1, 77, C], computed once."""
        if self._empty_prompt is None:
            embeds, _ = self.pipe.encode_prompt(
                prompt="", device=self._device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
            self._empty_prompt = embeds.to(dtype=self._dtype)
        return self._empty_prompt


def clip_image_embeds(pipe, images: Sequence[Image.Image] | torch.Tensor, device: torch.device,
                      source_crop: int | None = None) -> torch.Tensor:
    """Return a pipeline's raw CLIP ``image_embeds`` [N, D] (float32, CPU) of PIL images or a uint8 [N, 3, H, W] tensor.

    Preprocessed by the pipeline's own ``feature_extractor`` (CLIPImageProcessor), as its ``__call__`` does;
    ``source_crop`` first centre-crops each image and resizes it to that side.
    """
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"embed expects a uint8 [N, 3, H, W] tensor, got {images.dtype} {tuple(images.shape)}")
        arrays = list(images.permute(0, 2, 3, 1).cpu().numpy())
    else:
        arrays = [np.array(img.convert("RGB")) for img in images]
    if source_crop is not None:
        arrays = [_centre_crop_resize(a, int(source_crop)) for a in arrays]
    encoder = pipe.image_encoder
    if not arrays:
        return torch.zeros(0, int(encoder.config.projection_dim))
    pixels = pipe.feature_extractor(images=arrays, return_tensors="pt").pixel_values
    pixels = pixels.to(device=device, dtype=next(encoder.parameters()).dtype)
    return encoder(pixels).image_embeds.float().cpu()


def _pin_supplied_latents(pipe) -> None:
    """Make ``pipe.prepare_latents`` return supplied latents as given (already scaled by init_noise_sigma).

    Without latents it still draws and scales them as diffusers does; genview always supplies them.
    """
    original = pipe.prepare_latents

    def prepare_latents(batch_size, num_channels_latents, height, width, dtype, device, generator, latents=None):
        if latents is None:
            return original(batch_size, num_channels_latents, height, width, dtype, device, generator, latents)
        return latents.to(device=device, dtype=dtype)

    pipe.prepare_latents = prepare_latents


def _centre_crop_resize(array: np.ndarray, side: int) -> np.ndarray:
    """Centre-crop an HxWx3 image to a square on its short side and resize it to `side` (bilinear).

    The first seed's source preprocessing (ic_gan's CenterCropLongEdge, then torchvision Resize).
    """
    height, width = array.shape[:2]
    short = min(height, width)
    top, left = (height - short) // 2, (width - short) // 2
    square = Image.fromarray(np.ascontiguousarray(array[top : top + short, left : left + short]))
    return np.array(square.resize((side, side), Image.BILINEAR))


def resolve_diffusers_dtype(name: str, device: torch.device) -> torch.dtype:
    """Return the compute dtype: half precision only on CUDA (bf16 where supported), float32 elsewhere."""
    if name != "auto":
        if device.type not in ("cuda", "meta") and name != "float32":
            # Half precision is a CUDA speed-up (CPU fp16 kernels are slow or missing): run and record float32,
            # as IC-GAN does, so a recipe that names fp16 still runs on a CPU.
            warnings.warn(f"unCLIP dtype={name} applies on CUDA only; running {device.type} in float32")
            return torch.float32
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """Return the params name of a dtype."""
    return {v: k for k, v in DTYPES.items()}[dtype]
