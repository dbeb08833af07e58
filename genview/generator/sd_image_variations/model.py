"""The sd-image-variations generator: diffusers' StableDiffusionImageVariationPipeline, batched, per-row noise.

Weights: a local diffusers folder in the ``lambdalabs/sd-image-variations-diffusers`` layout
(model_index.json; image_encoder = CLIPVisionModelWithProjection, feature_extractor = CLIPImageProcessor,
unet, vae, scheduler; the release's safety_checker folder is not loaded: views are training data, not
published images). Nothing is looked up on a hub.

The denoising loop is the pipeline's own (`StableDiffusionImageVariationPipeline.__call__`), run on
embeddings rather than images so that the engine can condition a row on an interpolated embedding:
the condition is the image embedding as one cross-attention token, guidance is against a zero
embedding, latents start from N(0, I) x init_noise_sigma drawn per row from that row's seed.
tests/generator/test_sd_image_variations.py checks it against the pipeline called with the same noise.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

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
from genview.generator.sd_image_variations import DECLARATION
from genview.generator.seeding import torch_generator
from genview.generator.unclip import (
    clip_image_embeds,
    diffusers_component_files,
    dtype_name,
    pipeline_digest,
    resolve_diffusers_dtype,
)

PIPELINE_CLASS = "StableDiffusionImageVariationPipeline"
#: The components genview reads (the release also carries safety_checker, which is not loaded).
COMPONENTS = ("image_encoder", "feature_extractor", "unet", "vae", "scheduler")


def _preset_configs(preset: str) -> dict[str, dict[str, Any]]:
    """Return the constructor configs of every component of a preset."""
    if preset == "full":
        # lambdalabs/sd-image-variations-diffusers: Stable Diffusion v1 UNet (320..1280, 8 heads) whose
        # cross-attention width is CLIP ViT-L/14's 768-d projection; the SD v1 VAE; CLIP ViT-L/14 vision tower.
        return {
            "image_encoder": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                  image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu"),
            "unet": dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                         block_out_channels=[320, 640, 1280, 1280],
                         down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                         up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
                         attention_head_dim=8, cross_attention_dim=768),
            "vae": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                        block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4, scaling_factor=0.18215),
            "feature_extractor": dict(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
        }
    if preset == "tiny":
        # The same structure at toy widths: 32-d embeddings, 16x16 latents, 32 px images; milliseconds on a CPU.
        return {
            "image_encoder": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                  image_size=32, patch_size=4, projection_dim=32),
            "unet": dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=[32, 64],
                         down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                         up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], attention_head_dim=[2, 4],
                         cross_attention_dim=32, norm_num_groups=16),
            "vae": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, sample_size=32,
                        block_out_channels=[16, 32], down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=16),
            "feature_extractor": dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        }
    raise ValueError(f"unknown sd-image-variations preset {preset!r}; known: {', '.join(DECLARATION.presets)}")


def _build_pipeline(preset: str, seed: int, device: torch.device):
    """Instantiate a randomly initialised pipeline of a preset (on `device`; "meta" allocates nothing)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionImageVariationPipeline, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = _preset_configs(preset)
    build_device = device if device.type == "meta" else torch.device("cpu")
    with torch.random.fork_rng(devices=[]), torch.device(build_device):
        torch.manual_seed(int(seed))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg["image_encoder"]))
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(**cfg["vae"])
    pipe = StableDiffusionImageVariationPipeline(
        vae=vae.eval(), image_encoder=image_encoder.eval(), unet=unet.eval(),
        # The release's scheduler_config.json: PNDM on SD v1's scaled-linear betas, PRK steps skipped.
        scheduler=PNDMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=CLIPImageProcessor(**cfg["feature_extractor"]), requires_safety_checker=False,
    )
    if build_device != device:
        pipe.to(device)
    return pipe


def _weights_dir(path: str) -> Path:
    """Return the local diffusers folder `path`, strictly: it must exist and list the components genview reads."""
    directory = Path(path).expanduser()
    hint = ("expected a local diffusers folder in the lambdalabs/sd-image-variations-diffusers layout, or random test "
            "weights from `genview models init sd-image-variations --preset tiny --out DIR` (hub ids are not looked up)")
    if not directory.is_dir():
        raise WeightsNotFoundError(f"--weights {path}: no such directory; {hint}")
    index_file = directory / "model_index.json"
    if not index_file.is_file():
        raise WeightsNotFoundError(f"--weights {path}: no model_index.json; {hint}")
    index = json.loads(index_file.read_text())
    missing = [c for c in COMPONENTS if not (isinstance(index.get(c), list) and index[c][0] and (directory / c).is_dir())]
    if missing:
        raise WeightsNotFoundError(
            f"--weights {path}: a {index.get('_class_name', 'diffusers')} folder without {', '.join(missing)}; "
            f"sd-image-variations needs a {PIPELINE_CLASS} ({', '.join(COMPONENTS)})"
        )
    return directory


class SDImageVariationsGenerator(ViewGenerator):
    """Views from Stable Diffusion conditioned on the source's CLIP image embedding (sd-image-variations).

    ``embed`` returns the raw CLIP image embeddings ``image_embeds`` [N, D] (D = 768 for the release), the
    pipeline's condition; similarity between a view and its source is their cosine.
    """

    declaration = DECLARATION

    def __init__(self, pipe, params: dict[str, Any], weights: WeightsInfo, device: torch.device,
                 random_marker: dict[str, Any] | None = None) -> None:
        """Wrap a loaded StableDiffusionImageVariationPipeline (already on `device`) with checked params."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler

        settings = {**DECLARATION.params.defaults(), **self.check_params(params)}
        self.pipe = pipe
        self.weights = weights
        self._device = device
        self._random_marker = random_marker
        self._settings = settings
        self._dtype = resolve_diffusers_dtype(settings["dtype"], device)
        pipe.set_progress_bar_config(disable=True)
        # Every sampler is rebuilt from the checkpoint's own schedule (betas, prediction type, offset).
        base = dict(pipe.scheduler.config)
        if settings["scheduler"] == "pndm":
            self.scheduler = PNDMScheduler.from_config(base, skip_prk_steps=True)
        elif settings["scheduler"] == "ddim":
            self.scheduler = DDIMScheduler.from_config(base)
        else:
            self.scheduler = DPMSolverMultistepScheduler.from_config(base, algorithm_type="dpmsolver++", solver_order=2)
        native = int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
        self._image_size = int(settings["image_size"] or native)
        # Latents must survive the UNet's downsamplings (VAE factor x 2^(levels-1)); the pipeline wants x8.
        multiple = math.lcm(8, pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1))
        if self._image_size % multiple:
            raise ValueError(f"sd-image-variations image_size={settings['image_size']}: must be a multiple of {multiple}")
        self._unet = pipe.unet
        if device.type == "cuda":
            pipe.unet.to(memory_format=torch.channels_last)
            if settings["compile"]:
                self._unet = torch.compile(pipe.unet, fullgraph=False)

    # ---- construction ----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cpu", **params: Any) -> "SDImageVariationsGenerator":
        """Load a local diffusers folder (lambdalabs/sd-image-variations-diffusers layout); strict, never a hub."""
        from diffusers import StableDiffusionImageVariationPipeline

        params = cls.check_params(params)
        device = torch.device(device)
        directory = _weights_dir(str(path))
        dtype = resolve_diffusers_dtype(params.get("dtype", "auto"), device)
        extra = {} if dtype == torch.float32 else {"torch_dtype": dtype}
        pipe = StableDiffusionImageVariationPipeline.from_pretrained(
            str(directory), local_files_only=True, safety_checker=None, requires_safety_checker=False, **extra
        )
        pipe.to(device)
        marker = read_random_marker(directory)
        files = [f for f in diffusers_component_files(directory) if f.parent.name != "safety_checker"]
        weights = WeightsInfo(id=str(path), sha256=sha256_files(files), random_init=marker is not None,
                              preset=marker.get("preset") if marker else None)
        return cls(pipe, params, weights, device, random_marker=marker)

    @classmethod
    def from_preset(cls, preset: str, seed: int = 0, device: str | torch.device = "cpu",
                    **params: Any) -> "SDImageVariationsGenerator":
        """Build a randomly initialised model of a preset: ``tiny`` (tests) or ``full`` (the release's sizes)."""
        params = cls.check_params(params)
        device = torch.device(device)
        pipe = _build_pipeline(preset, seed, device)
        dtype = resolve_diffusers_dtype(params.get("dtype", "auto"), device)
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
        digest = pipeline_digest(pipe, preset, seed, model=DECLARATION.name, components=("image_encoder", "unet", "vae"))
        weights = WeightsInfo(id=f"preset:{preset}", sha256=digest, random_init=True, preset=preset)
        return cls(pipe, params, weights, device, random_marker={"model": DECLARATION.name, "preset": preset, "seed": int(seed)})

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the diffusers folder `from_pretrained` reads; random weights keep their marker."""
        if self._device.type == "meta":
            raise ValueError("a meta-device sd-image-variations (for counting only) has no weights to save")
        self.pipe.save_pretrained(str(path), safe_serialization=True)
        if self._random_marker is not None:
            m = self._random_marker
            write_random_marker(path, DECLARATION.name, m.get("preset") or "unknown", int(m.get("seed", 0)))

    @classmethod
    def view_cost(cls, preset: str, encoder_calls: float, params: dict[str, Any]):
        """CLIP image encoder, UNet x steps (x2 rows with guidance), VAE decoder; counted on meta tensors."""
        from genview.generator.cost import sd_image_variations_cost

        return sd_image_variations_cost(preset, encoder_calls, params)

    # ---- properties ------------------------------------------------------------------------------

    @property
    def params(self) -> dict[str, Any]:
        """Settings in force (defaults and the native size resolved), JSON-able."""
        return {**self._settings, "image_size": self._image_size, "dtype": dtype_name(self._dtype),
                "guidance_scale": float(self._settings["guidance_scale"]),
                "compile": bool(self._settings["compile"] and self._device.type == "cuda")}

    @property
    def image_size(self) -> int:
        """Side of the square views."""
        return self._image_size

    @property
    def input_side(self) -> int:
        """Side the CLIP processor crops a source to (224 for the release)."""
        crop = self.pipe.feature_extractor.crop_size
        return int(crop if isinstance(crop, int) else crop["height"])

    @property
    def device(self) -> torch.device:
        """Device the pipeline runs on."""
        return self._device

    @property
    def embedding_dim(self) -> int:
        """Width D of the CLIP image embeddings."""
        return int(self.pipe.image_encoder.config.projection_dim)

    @property
    def guided(self) -> bool:
        """Whether classifier-free guidance is on (the pipeline's rule: guidance_scale > 1)."""
        return float(self._settings["guidance_scale"]) > 1.0

    # ---- the generator surface -------------------------------------------------------------------

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """Return raw CLIP image embeddings [N, D] (float32, CPU), preprocessed by the folder's feature_extractor."""
        return clip_image_embeds(self.pipe, images, self._device)

    @torch.inference_mode()
    def generate(self, embeddings: torch.Tensor, seeds: Sequence[int], labels: torch.Tensor | None = None) -> torch.Tensor:
        """Return uint8 views [B, 3, S, S] (CPU); row i conditioned on embeddings[i], noise from seeds[i] only.

        The whole batch runs at once; a row's noise and condition do not depend on its batch, its pixels
        may move by one level between batch sizes (batched kernels round differently). ``labels``: ignored.
        """
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"sd-image-variations expects embeddings [B, {self.embedding_dim}], got {tuple(embeddings.shape)}")
        if len(seeds) != embeddings.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for {embeddings.shape[0]} embeddings: need one seed per row")
        if embeddings.shape[0] == 0:
            return torch.zeros(0, 3, self._image_size, self._image_size, dtype=torch.uint8)
        return self._denoise(embeddings, self.initial_latents(seeds))

    def initial_latents(self, seeds: Sequence[int]) -> torch.Tensor:
        """Return x_T before init_noise_sigma: N(0, I) per row, drawn in float32 on the CPU from that row's seed."""
        side = self._image_size // self.pipe.vae_scale_factor
        shape = (1, int(self.pipe.unet.config.in_channels), side, side)
        return torch.cat([torch.randn(shape, generator=torch_generator(seed), dtype=torch.float32) for seed in seeds])

    def _denoise(self, embeddings: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The pipeline's loop (`StableDiffusionImageVariationPipeline.__call__`) on given embeddings and noise."""
        pipe, scheduler, guidance = self.pipe, self.scheduler, float(self._settings["guidance_scale"])
        condition = embeddings.to(device=self._device, dtype=self._dtype).unsqueeze(1)  # one token: [B, 1, D]
        if self.guided:
            condition = torch.cat([torch.zeros_like(condition), condition])  # unconditional = the zero embedding
        scheduler.set_timesteps(int(self._settings["num_inference_steps"]), device=self._device)
        latents = (noise * scheduler.init_noise_sigma).to(device=self._device, dtype=self._dtype)
        for t in scheduler.timesteps:
            rows = torch.cat([latents] * 2) if self.guided else latents
            rows = scheduler.scale_model_input(rows, t)
            prediction = self._unet(rows, t, encoder_hidden_states=condition).sample
            if self.guided:
                unconditional, conditional = prediction.chunk(2)
                prediction = unconditional + guidance * (conditional - unconditional)
            latents = scheduler.step(prediction, t, latents).prev_sample
        images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        images = (images.float() / 2 + 0.5).clamp(0, 1)  # the pipeline's postprocess (denormalize)
        return (images * 255.0).round().clamp(0, 255).to(torch.uint8).cpu()
