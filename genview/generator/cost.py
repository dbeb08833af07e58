"""Cost per view: parameters per stage and FLOPs per generated view, counted on meta tensors (no weights).

FLOPs are what ``torch.utils.flop_counter.FlopCounterMode`` counts: matrix products, convolutions and
attention (2 FLOPs per multiply-add). Elementwise work (norms, activations, the sampler's update) is
left out; it is a few percent of a UNet or a BigGAN and no accelerator's peak is quoted for it.
Models are built on ``torch.device("meta")``: shapes only, nothing allocated, so even the full
Stable unCLIP (about 1.9 B parameters) is counted in seconds on a laptop.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

#: Dense bf16/fp16 tensor-core peaks from NVIDIA's datasheets (TFLOP/s): A100 SXM/PCIe, H100 SXM.
GPU_PEAK_TFLOPS: dict[str, float] = {"A100": 312.0, "H100": 989.0}
#: Images in the ImageNet-1k training split (the seed's "approximately 1.2 million images").
IMAGENET_TRAIN_IMAGES = 1_281_167
#: Seed 000 (Can Generative Models Improve SSL?), App. D "Offline generation": 10 parallel processes per
#: model on A100 GPUs, each process generating one view per ImageNet image; one round over ImageNet took
#: ~178 h with Stable unCLIP and ~40 h with IC-GAN. Read as one A100 per process: hours per A100 per round.
SEED_HOURS_PER_ROUND: dict[str, float] = {"unclip": 178.0, "icgan": 40.0}
#: Samples the first seed's IC-GAN script drew per image (num_samples = 16), of which it kept the last.
SEED_ICGAN_DRAWS = 16
#: Views per source in the seed (K = 10) and in genview's default.
DEFAULT_K = 10


def seed_views_per_second(model: str) -> float:
    """Return the views/s per A100 the seed measured: 1,281,167 views / (hours per round x 3600)."""
    return IMAGENET_TRAIN_IMAGES / (SEED_HOURS_PER_ROUND[model] * 3600.0)


@dataclasses.dataclass(frozen=True)
class StageCost:
    """One stage of making a view: its parameters, FLOPs of one call, and calls per generated view."""

    name: str
    params: int
    flops_per_call: int
    calls_per_view: float
    note: str = ""

    @property
    def flops_per_view(self) -> float:
        """FLOPs this stage spends per generated view."""
        return self.flops_per_call * self.calls_per_view


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Parameters per stage and FLOPs per generated view of one model at one setting."""

    model: str
    preset: str
    settings: dict[str, Any]
    stages: tuple[StageCost, ...]

    @property
    def total_params(self) -> int:
        """Parameters of all stages."""
        return sum(s.params for s in self.stages)

    @property
    def flops_per_view(self) -> float:
        """FLOPs per generated view, all stages."""
        return sum(s.flops_per_view for s in self.stages)

    def stage(self, name: str) -> StageCost:
        """Return the stage called `name`."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}")

    def views_per_second(self, peak_tflops: float, utilisation: float = 1.0) -> float:
        """Views/s a device of `peak_tflops` would make at `utilisation` of its peak."""
        return peak_tflops * 1e12 * utilisation / self.flops_per_view

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        out = dataclasses.asdict(self)
        out["stages"] = [dict(dataclasses.asdict(s), flops_per_view=s.flops_per_view) for s in self.stages]
        out.update(total_params=self.total_params, flops_per_view=self.flops_per_view)
        return out


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Return the FLOPs of one call of `fn` (no autograd), as FlopCounterMode counts them."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def count_params(*modules: torch.nn.Module) -> int:
    """Return the number of parameters of the given modules."""
    return sum(p.numel() for m in modules for p in m.parameters())


def view_cost(
    model_name: str,
    preset: str = "full",
    *,
    k: int = DEFAULT_K,
    score_views: bool = True,
    **params: Any,
) -> CostReport:
    """Return parameters per stage and FLOPs per generated view of `model_name` at `preset` and `params`.

    The condition encoder runs once per source (shared by its `k` views) and, with `score_views`,
    once more per view to score its similarity to the source (what `genview generate` does).
    `params` are the generator's own settings (e.g. unCLIP's num_inference_steps, guidance_scale,
    image_size; IC-GAN's truncation), validated by the generator itself.
    """
    if k < 1:
        raise ValueError(f"k={k}: need at least one view per source")
    encoder_calls = 1.0 / k + (1.0 if score_views else 0.0)
    if model_name == "unclip":
        return _unclip_cost(preset, encoder_calls, params)
    if model_name in ("icgan", "cc-icgan"):
        return _icgan_cost(model_name, preset, encoder_calls, params)
    if model_name == "eldm":
        return _eldm_cost(preset, encoder_calls, params)
    from genview.generator.registry import model_names

    raise ValueError(f"view_cost knows {', '.join(model_names())}; got {model_name!r}")


# --------------------------------------------------------------------------------------------------
# Stable unCLIP
# --------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _meta_unclip(preset: str):
    """Return a meta-device unCLIP of `preset` (built once per process: shapes only)."""
    from genview.generator.unclip import UnCLIPGenerator

    return UnCLIPGenerator.from_preset(preset, device="meta")


@functools.lru_cache(maxsize=64)
def _unclip_flops(preset: str, part: str, image_size: int = 0, rows: int = 1) -> int:
    """Return FLOPs of one call of an unCLIP part: encoder (one image), denoiser (`rows` UNet rows), decoder, text_encoder."""
    pipe = _meta_unclip(preset).pipe
    meta = torch.device("meta")
    if part == "encoder":
        side = int(pipe.image_encoder.config.image_size)
        return count_flops(pipe.image_encoder, torch.empty(1, 3, side, side, device=meta))
    latent = image_size // pipe.vae_scale_factor
    channels = int(pipe.unet.config.in_channels)
    if part == "denoiser":
        width = int(pipe.text_encoder.config.hidden_size)
        context = int(pipe.tokenizer.model_max_length)
        return count_flops(
            pipe.unet,
            torch.empty(rows, channels, latent, latent, device=meta),
            torch.tensor(500, device=meta),
            encoder_hidden_states=torch.empty(rows, context, width, device=meta),
            class_labels=torch.empty(rows, int(pipe.unet.config.projection_class_embeddings_input_dim), device=meta),
        )
    if part == "decoder":
        return count_flops(pipe.vae.decode, torch.empty(1, channels, latent, latent, device=meta))
    if part == "text_encoder":
        ids = torch.zeros(1, int(pipe.tokenizer.model_max_length), dtype=torch.long, device=meta)
        return count_flops(pipe.text_encoder, ids)
    raise ValueError(f"unknown unCLIP part {part!r}")


def _unclip_cost(preset: str, encoder_calls: float, params: dict[str, Any]) -> CostReport:
    """Cost of one unCLIP view: CLIP image encoder, UNet x steps (x2 rows with guidance), VAE decoder."""
    from genview.generator.unclip import UnCLIPGenerator, UnCLIPSettings

    base = _meta_unclip(preset)
    # A generator over the shared meta pipeline validates `params` and resolves defaults exactly as a real run.
    gen = UnCLIPGenerator(base.pipe, UnCLIPSettings.from_params(params), base.weights, torch.device("meta"))
    settings = gen.params
    pipe, size, steps = gen.pipe, gen.image_size, int(settings["num_inference_steps"])
    rows = 2 if gen.guided else 1
    stages = (
        StageCost(
            "encoder", count_params(pipe.image_encoder), _unclip_flops(preset, "encoder"), encoder_calls,
            "CLIP image encoder: once per source (shared by k views) + once per view to score it",
        ),
        StageCost(
            "denoiser", count_params(pipe.unet), _unclip_flops(preset, "denoiser", size, rows), float(steps),
            f"UNet, {rows} row(s) per step ({'guided: conditional + unconditional' if rows == 2 else 'no guidance'})",
        ),
        StageCost(
            "decoder", count_params(pipe.vae.decoder, pipe.vae.post_quant_conv), _unclip_flops(preset, "decoder", size), 1.0,
            "VAE decoder, latents to pixels",
        ),
        StageCost(
            "text_encoder", count_params(pipe.text_encoder), _unclip_flops(preset, "text_encoder"), 0.0,
            "the empty prompt, encoded once per model load: nothing per view",
        ),
    )
    return CostReport("unclip", preset, settings, stages)


# --------------------------------------------------------------------------------------------------
# IC-GAN / CC-IC-GAN
# --------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _meta_icgan(model_name: str, preset: str):
    """Return a meta-device IC-GAN / CC-IC-GAN of `preset` (built once per process)."""
    from genview.generator.registry import get_generator_class

    return get_generator_class(model_name).from_preset(preset, device="meta")


def _icgan_cost(model_name: str, preset: str, encoder_calls: float, params: dict[str, Any]) -> CostReport:
    """Cost of one IC-GAN view: ResNet-50 feature extractor + one BigGAN generator pass."""
    from genview.generator.resnet_features import ENCODER_INPUT_SIZE

    gen = _meta_icgan(model_name, preset)
    # Settings are validated by the generator's own constructor; FLOPs do not depend on them.
    settings = dict(type(gen)(gen.network, gen.encoder, gen.weights, gen.feature_extractor, device="meta", **params).params)
    meta = torch.device("meta")
    cfg = gen.network.config
    labels = torch.zeros(1, dtype=torch.long, device=meta) if gen.needs_labels else None
    generator_flops = count_flops(
        gen.network, torch.empty(1, cfg.z_dim, device=meta), torch.empty(1, cfg.instance_sz, device=meta), labels
    )
    encoder_flops = count_flops(gen.encoder, torch.empty(1, 3, ENCODER_INPUT_SIZE, ENCODER_INPUT_SIZE, device=meta))
    stages = (
        StageCost(
            "encoder", count_params(gen.encoder), encoder_flops, encoder_calls,
            "ResNet-50 features: once per source (shared by k views) + once per view to score it",
        ),
        StageCost("generator", count_params(gen.network), generator_flops, 1.0, f"BigGAN {cfg.resolution} px, one pass"),
    )
    settings["image_size"] = int(cfg.resolution)
    return CostReport(model_name, preset, settings, stages)


# --------------------------------------------------------------------------------------------------
# E-LDM (Gen-SIS)
# --------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _meta_eldm(preset: str):
    """Return a meta-device E-LDM of `preset` (built once per process: shapes only)."""
    from genview.generator.eldm import ELDMGenerator

    return ELDMGenerator.from_preset(preset, device="meta")


def _eldm_cost(preset: str, encoder_calls: float, params: dict[str, Any]) -> CostReport:
    """Cost of one E-LDM view: DINO encoder, UNet x steps (x2 rows with guidance != 1), VQ decoder."""
    from genview.generator.eldm import ELDMGenerator

    base = _meta_eldm(preset)
    # A generator over the shared meta networks validates `params` and resolves the guidance preset.
    gen = ELDMGenerator(
        base.vqvae, base.unet, base.projection, base.encoder, base.scheduler_config, base.weights,
        latent_scale=base.latent_scale, device="meta", **params,
    )  # fmt: skip
    settings = dict(gen.params)
    meta = torch.device("meta")
    steps = int(settings["steps"])
    rows = 2 if float(settings["guidance_scale"]) != 1.0 else 1  # the generator's CFG rule
    crop = int(gen.encoder.preprocess.crop)
    unet = gen.unet
    side = int(unet.config.sample_size)
    channels = int(unet.config.in_channels)
    width = int(unet.config.cross_attention_dim)
    denoiser_flops = count_flops(
        unet, torch.empty(rows, channels, side, side, device=meta), torch.tensor(500, device=meta),
        encoder_hidden_states=torch.empty(rows, 1, width, device=meta),
    )  # fmt: skip
    latent_channels = int(gen.vqvae.config.latent_channels)
    decoder_flops = count_flops(gen.vqvae.decode, torch.empty(1, latent_channels, side, side, device=meta))
    encoder_flops = count_flops(gen.encoder.network, torch.empty(1, 3, crop, crop, device=meta))
    stages = (
        StageCost(
            "encoder", count_params(gen.encoder.network), encoder_flops, encoder_calls,
            f"{gen.encoder.kind} encoder at {crop} px: once per source (shared by k views) + once per view to score it",
        ),
        StageCost(
            "denoiser", count_params(unet, gen.projection), denoiser_flops, float(steps),
            f"UNet, {rows} row(s) per step ({'guided: conditional + null' if rows == 2 else 'no guidance'})",
        ),
        StageCost(
            "decoder", count_params(gen.vqvae.decoder, gen.vqvae.post_quant_conv, gen.vqvae.quantize),
            decoder_flops, 1.0, "VQ-f4 decoder, latents to pixels",
        ),
    )
    settings["image_size"] = int(gen.image_size)
    return CostReport("eldm", preset, settings, stages)


# --------------------------------------------------------------------------------------------------
# The README table
# --------------------------------------------------------------------------------------------------

#: The first seed's unCLIP setting (its released script, recipe genssl-unclip): the -small model, 10 steps.
SEED_UNCLIP_ROW = "unCLIP-small 768 px, 10 steps, guidance 10 (seed 000's script)"
#: (label, model, params[, preset]) rows of the README table; the preset defaults to flop_table's.
TABLE_ROWS: tuple[tuple[Any, ...], ...] = (
    ("IC-GAN 256 px", "icgan", {}),
    (SEED_UNCLIP_ROW, "unclip", {"num_inference_steps": 10, "guidance_scale": 10.0}, "small"),
    *(
        (f"unCLIP {size} px, {steps} steps, {'guidance 10' if g > 1 else 'no guidance'}", "unclip",
         {"image_size": size, "num_inference_steps": steps, "guidance_scale": g})
        for size in (768, 512)
        for steps in (20, 10, 50)
        for g in (10.0, 1.0)
    ),
)
#: Rows whose setting is the seed's (its released scripts), with its measurement. (The pipeline defaults,
#: 20 steps on the ViT-H model, are not what the seed ran.)
SEED_ROWS = {"IC-GAN 256 px": "icgan", SEED_UNCLIP_ROW: "unclip"}


def _si(value: float) -> str:
    """Format a FLOP count with an SI prefix (G / T)."""
    return f"{value / 1e12:.2f} T" if value >= 1e11 else f"{value / 1e9:.1f} G"


def flop_table(
    rows: Sequence[tuple[str, str, dict[str, Any]]] = TABLE_ROWS,
    peaks: dict[str, float] = GPU_PEAK_TFLOPS,
    utilisations: Sequence[float] = (1.0, 0.4),
    k: int = DEFAULT_K,
    preset: str = "full",
) -> str:
    """Return the README's markdown: FLOPs per view and views/s per GPU at given utilisations, beside the seed."""
    head = ["setting", "FLOP / view"]
    head += [f"{gpu} @ {u:.0%}" for gpu in peaks for u in utilisations]
    head += ["seed, measured (A100)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    reports = {}
    for label, model, params, *row_preset in rows:
        report = view_cost(model, row_preset[0] if row_preset else preset, k=k, **params)
        reports[label] = report
        cells = [label, _si(report.flops_per_view)]
        cells += [f"{report.views_per_second(peak, u):.1f}" for peak in peaks.values() for u in utilisations]
        cells.append(f"{seed_views_per_second(SEED_ROWS[label]):.1f}" if label in SEED_ROWS else "")
        lines.append("| " + " | ".join(cells) + " |")

    lines += ["", "| model | stage | parameters | FLOP / call | calls / view | note |", "|---|---|---|---|---|---|"]
    for label in ("IC-GAN 256 px", SEED_UNCLIP_ROW):
        if label not in reports:
            continue
        report = reports[label]
        for s in report.stages:
            lines.append(
                f"| {label} | {s.name} | {s.params / 1e6:.1f} M | {_si(s.flops_per_call)} | "
                f"{s.calls_per_view:g} | {s.note} |"
            )

    notes = [
        "",
        f"Views/s = peak x utilisation / (FLOP per view); peaks are dense bf16 tensor-core figures "
        f"({', '.join(f'{g} {p:g} TFLOP/s' for g, p in peaks.items())}). FLOPs count matmuls, convolutions and "
        f"attention on meta tensors (`genview.generator.cost.view_cost`); the encoder runs once per source "
        f"(k = {k} views) and once per view for its similarity score.",
        f"Seed measured: seed 000, App. D: one pass over ImageNet ({IMAGENET_TRAIN_IMAGES:,} images, one view "
        f"each) took ~{SEED_HOURS_PER_ROUND['unclip']:g} h per A100 process with Stable unCLIP and "
        f"~{SEED_HOURS_PER_ROUND['icgan']:g} h with IC-GAN.",
    ]
    for label, model in SEED_ROWS.items():
        if label in reports:
            measured = seed_views_per_second(model)
            a100 = peaks.get("A100", GPU_PEAK_TFLOPS["A100"])
            ceiling = reports[label].views_per_second(a100)
            notes.append(f"{label}: the paper's {measured:.1f} views/s is {measured / ceiling:.1%} of the A100's bf16 peak (the FLOPs above at that rate).")
            if model == "icgan":
                report = reports[label]
                # Its script drew SEED_ICGAN_DRAWS samples per image and kept the last: that many generator
                # passes and one encoder pass (no scoring) per kept view.
                spent = SEED_ICGAN_DRAWS * report.stage("generator").flops_per_call + report.stage("encoder").flops_per_call
                notes.append(
                    f"{label}: the paper's script drew {SEED_ICGAN_DRAWS} samples per kept view, {_si(spent)}FLOP per kept "
                    f"view, so it ran at {measured * spent / (a100 * 1e12):.1%} of the A100's bf16 peak."
                )
    return "\n".join(lines + notes) + "\n"
