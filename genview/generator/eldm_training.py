"""Train an E-LDM on the user's images (`genview train eldm`): accelerate-based, resumable, EMA.

The encoder and the VQ autoencoder are frozen, so their outputs are computed once and cached
in RUN/cache (memory-mapped .npy files). The UNet and the condition projection learn the
standard epsilon objective with the condition replaced by the null (zero) embedding with
probability `cfg_dropout` (0.1). The batch order and the noise of step s are pure functions
of (seed, s): with the model, optimizer, LR schedule and EMA restored by accelerate's
`load_state`, a resumed run continues exactly as if it had never stopped.

RUN layout::

    RUN/train_config.json            settings a resume must match
    RUN/train_log.jsonl              {"step", "loss", "lr"} per step
    RUN/cache/                       embeddings.npy, latents.npy (fp16), valid.npy, cache.json
    RUN/checkpoints/step-00001000/   accelerate save_state + train_state.json
    RUN/eldm.json, vqvae/, unet/, scheduler/, condition_projection/, encoder/   final EMA model
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

import fsspec
import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genview.datastore.sources import list_sources
from genview.generator.base import WeightsInfo
from genview.generator.eldm import (
    ELDM_JSON,
    LDM_SCHEDULER_CONFIG,
    UNET_PRESETS,
    ConditionProjection,
    ELDMGenerator,
    build_unet,
    latent_size,
    load_vqvae,
)
from genview.generator.encoders import ConditionEncoder, resize_center_crop, load_condition_encoder
from genview.pipeline.decode import DecodeError, decode_image

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"step-(\d+)")
#: Settings that may change between a run and its resume (they do not alter the trajectory).
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "keep_checkpoints", "progress", "embed_batch_size"}


@dataclasses.dataclass
class TrainResult:
    """What one `train_eldm` call did."""

    out: str  # the run folder; `ELDMGenerator.from_pretrained(out)` loads the final EMA model
    start_step: int  # step this call began at (0, or the checkpoint it resumed from)
    step: int  # step reached
    losses: list[float]  # denoising loss of every step this call ran (start_step+1 .. step)
    resumed_from: str | None  # checkpoint folder, when resumed
    skipped_sources: int  # images that could not be decoded (left out of training)


class _Denoiser(nn.Module):
    """The trained part: condition projection + UNet, as one module for accelerate and the EMA."""

    def __init__(self, unet: nn.Module, projection: ConditionProjection):
        super().__init__()
        self.unet = unet
        self.projection = projection

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        return self.unet(noisy, timesteps, encoder_hidden_states=self.projection(embeddings)).sample


def _derive_seed(*parts: Any) -> int:
    """Return a 63-bit seed from parts (stable across runs, processes and machines)."""
    text = ":".join(str(p) for p in ("genview-eldm-train", *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & (2**63 - 1)


class _BatchOrder:
    """Global batch s = items [s*B, (s+1)*B) of the stream perm(epoch 0) ++ perm(epoch 1) ++ ..."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            gen = torch.Generator().manual_seed(_derive_seed(self.seed, "epoch", epoch))
            self._perms[epoch] = torch.randperm(self.n, generator=gen).numpy()
        return self._perms[epoch]

    def batch(self, step: int) -> np.ndarray:
        """Return the dataset indices of global batch `step` (0-based)."""
        pos = np.arange(step * self.batch_size, (step + 1) * self.batch_size, dtype=np.int64)
        epochs, offsets = pos // self.n, pos % self.n
        return np.array([self._perm(int(e))[o] for e, o in zip(epochs, offsets)], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Frozen outputs, computed once.
# ---------------------------------------------------------------------------------------------


def _fingerprint_module(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _load_pixels(uri: str, min_side: int) -> torch.Tensor:
    """Return one source as uint8 [3, H, W] (decoded once, EXIF-rotated, RGB)."""
    with fsspec.open(uri, "rb") as fh:
        data = fh.read()
    arr = np.asarray(decode_image(data, min_side=min_side), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _precompute(
    accelerator,
    uris: Sequence[str],
    cache: Path,
    encoder: ConditionEncoder,
    vqvae,
    resolution: int,
    batch_size: int,
    show_progress: bool,
) -> None:
    """Fill cache/{embeddings,latents,valid}.npy; each process takes every world-th chunk of rows."""
    n = len(uris)
    latent_side = latent_size(vqvae, resolution)
    shapes = {
        "embeddings.npy": ((n, encoder.embed_dim), np.float32),
        "latents.npy": ((n, int(vqvae.config.latent_channels), latent_side, latent_side), np.float16),
        "valid.npy": ((n,), np.bool_),
    }
    if accelerator.is_main_process:
        cache.mkdir(parents=True, exist_ok=True)
        for name, (shape, dtype) in shapes.items():
            np.lib.format.open_memmap(cache / name, mode="w+", dtype=dtype, shape=shape).flush()
    accelerator.wait_for_everyone()
    arrays = {name: np.lib.format.open_memmap(cache / name, mode="r+") for name in shapes}
    device = accelerator.device
    encoder.to(device)
    vqvae.to(device).eval().requires_grad_(False)
    min_side = max(resolution, encoder.preprocess.resize)
    chunks = list(range(0, n, batch_size))[accelerator.process_index :: accelerator.num_processes]
    bar = tqdm(chunks, desc="embed + encode sources", disable=not show_progress, unit="batch")
    for start in bar:
        rows = range(start, min(start + batch_size, n))
        pixels, ok_rows = [], []
        for row in rows:
            try:
                pixels.append(_load_pixels(uris[row], min_side))
                ok_rows.append(row)
            except (DecodeError, OSError) as exc:
                logger.warning("E-LDM training skips %s: %s", uris[row], exc)
        valid = arrays["valid.npy"]
        valid[list(rows)] = False
        if not pixels:
            continue
        arrays["embeddings.npy"][ok_rows] = encoder.embed(pixels).numpy()
        with torch.no_grad():
            batch = torch.cat([resize_center_crop(p[None], resolution, resolution) for p in pixels])
            batch = (batch.clamp(0, 255) / 127.5 - 1.0).to(device)
            # LDM trains on the VQ encoder output before quantisation (VQModelInterface.encode).
            latents = vqvae.encode(batch).latents.float().cpu().numpy()
        arrays["latents.npy"][ok_rows] = latents.astype(np.float16)
        valid[ok_rows] = True
    for array in arrays.values():
        array.flush()
    accelerator.wait_for_everyone()


def _prepare_cache(accelerator, uris, cache: Path, encoder, vqvae, fingerprints: dict[str, str], resolution: int,
                   batch_size: int, show_progress: bool) -> dict[str, np.ndarray]:  # fmt: skip
    """Return the cached arrays, computing them unless cache.json matches this data, encoder and VQ."""
    key = {
        "uris_sha256": hashlib.sha256("\n".join(uris).encode()).hexdigest(),
        "count": len(uris),
        **fingerprints,
        "resolution": resolution,
    }
    meta = cache / "cache.json"
    if not (meta.is_file() and json.loads(meta.read_text()) == key):
        if accelerator.is_main_process and meta.exists():
            meta.unlink()  # invalidate first: a crash mid-way must not leave a "valid" stale cache
        accelerator.wait_for_everyone()
        _precompute(accelerator, uris, cache, encoder, vqvae, resolution, batch_size, show_progress)
        if accelerator.is_main_process:
            meta.write_text(json.dumps(key, indent=2) + "\n")  # written last: the cache's done marker
        accelerator.wait_for_everyone()
    return {name: np.load(cache / f"{name}.npy", mmap_mode="r") for name in ("embeddings", "latents", "valid")}


# ---------------------------------------------------------------------------------------------
# Checkpoints.
# ---------------------------------------------------------------------------------------------


def list_checkpoints(out: str | os.PathLike) -> list[tuple[int, Path]]:
    """Return the complete checkpoints of a run as (step, folder), oldest first."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = CHECKPOINT_PATTERN.fullmatch(child.name)
        if m and (child / "train_state.json").is_file():
            found.append((int(m[1]), child))
    return sorted(found)


def _save_checkpoint(accelerator, out: Path, step: int, keep: int) -> Path:
    """Save accelerate state under a temporary name, then rename: a checkpoint is whole or absent."""
    root = out / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / "train_state.json").write_text(json.dumps({"step": step}) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for _, old in list_checkpoints(out)[: -max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


# ---------------------------------------------------------------------------------------------
# Components.
# ---------------------------------------------------------------------------------------------


def _resolve_components(encoder, vqvae, init, preset, normalize_embedding, resolution, seed):
    """Return (encoder, vqvae, unet, projection, scheduler_config, latent_scale, resolution) to train."""
    if init is not None:
        if encoder is not None or vqvae is not None:
            raise ValueError("--init already holds the encoder and the VQ autoencoder; do not pass --encoder/--vqvae with it")
        base = ELDMGenerator.from_pretrained(str(init))
        unet, projection = base.unet.requires_grad_(True), base.projection.requires_grad_(True)
        resolution = int(resolution or base.image_size)
        return base.encoder, base.vqvae, unet, projection, base.scheduler_config, base.latent_scale, resolution
    if encoder is None:
        raise ValueError("--encoder is required: a DINO/ResNet-50/TorchScript checkpoint (e.g. dino:dino_deitsmall16_pretrain.pth)")
    if vqvae is None:
        raise ValueError("--vqvae is required: a diffusers VQModel folder or a CompVis vq-f4 model.ckpt")
    if preset not in UNET_PRESETS:
        raise ValueError(f"--preset {preset!r} is unknown; known presets: {', '.join(UNET_PRESETS)}")
    enc = encoder if isinstance(encoder, ConditionEncoder) else load_condition_encoder(encoder)
    vq = vqvae if isinstance(vqvae, torch.nn.Module) else load_vqvae(vqvae)
    resolution = int(resolution or vq.config.sample_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_derive_seed(seed, "init"))
        unet = build_unet(preset, sample_size=latent_size(vq, resolution))
        projection = ConditionProjection(enc.embed_dim, unet.config.cross_attention_dim, bool(normalize_embedding))
    return enc, vq, unet, projection, dict(LDM_SCHEDULER_CONFIG), 1.0, resolution


def _check_resume_config(path: Path, config: dict[str, Any]) -> None:
    """Raise when a resumed run's settings differ from the ones it was started with."""
    old = json.loads(path.read_text())
    changed = [
        f"{k}: was {old.get(k)!r}, now {config.get(k)!r}"
        for k in sorted(set(old) | set(config))
        if k not in RESUMABLE_CHANGES and old.get(k) != config.get(k)
    ]
    if changed:
        raise ValueError(
            f"{path.parent} holds a run with other settings ({'; '.join(changed)}); pass the same settings "
            "to resume it, or resume=False (--no-resume) to start over"
        )


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past `step` (written after the checkpoint a resume starts from)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


# ---------------------------------------------------------------------------------------------
# The entry point.
# ---------------------------------------------------------------------------------------------


def train_eldm(
    data: str,
    out: str | os.PathLike,
    *,
    encoder: str | ConditionEncoder | None = None,
    vqvae: str | os.PathLike | torch.nn.Module | None = None,
    init: str | os.PathLike | None = None,
    preset: str = "full",
    resolution: int | None = None,
    steps: int = 100_000,
    batch_size: int = 64,
    lr: float = 1e-4,
    warmup_steps: int = 1000,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    ema_decay: float = 0.9999,
    cfg_dropout: float = 0.1,
    normalize_embedding: bool = True,
    latent_scale: float | str | None = None,
    checkpoint_every: int = 1000,
    keep_checkpoints: int = 2,
    seed: int = 0,
    resume: bool = True,
    mixed_precision: str = "no",
    cpu: bool = False,
    embed_batch_size: int = 32,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume training) an E-LDM on the images of `data`; write the EMA model to `out`.

    data: folder tree or list file (as `genview generate` reads). encoder: `--encoder` spec
    (see encoders.load_condition_encoder) or a ConditionEncoder. vqvae: diffusers VQModel
    folder or CompVis vq-f4 model.ckpt (frozen). init: an E-LDM folder to start from instead
    (its encoder, VQ, UNet and projection). preset: UNet size for a fresh run ("full": LDM
    VQ-f4 256 px UNet; "tiny": tests). resolution: training image side (default: the VQ's
    sample_size). batch_size is global (split over processes). lr/warmup_steps: AdamW with
    linear warm-up then constant (Gen-SIS: 1e-4, 1000). cfg_dropout: probability the condition
    is replaced by the null embedding. Checkpoints every `checkpoint_every` steps and at the
    end into out/checkpoints/step-XXXXXXXX (the newest `keep_checkpoints` kept); with
    resume=True the newest one is continued, with resume=False old checkpoints are deleted.
    latent_scale: multiplier of the VQ latents (None: 1.0 as LDM's VQ-f4, or --init's; "auto":
    1/std of the cached latents). Returns a TrainResult; `out` then loads with
    ELDMGenerator.from_pretrained.
    """
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    if steps < 0 or batch_size < 1 or checkpoint_every < 1:
        raise ValueError("--steps must be >= 0, --batch-size and --checkpoint-every >= 1")
    if not 0.0 <= cfg_dropout < 1.0:
        raise ValueError(f"--cfg-dropout must be in [0, 1), got {cfg_dropout}")
    out = Path(out)
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    world, rank = accelerator.num_processes, accelerator.process_index
    if batch_size % world:
        raise ValueError(f"--batch-size {batch_size} must be divisible by the number of processes ({world})")
    show = progress and accelerator.is_main_process
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and (out / "checkpoints").exists():
            shutil.rmtree(out / "checkpoints")  # --no-resume: the old trajectory must never be picked up
    accelerator.wait_for_everyone()

    enc, vq, unet, projection, scheduler_config, base_scale, resolution = _resolve_components(
        encoder, vqvae, init, preset, normalize_embedding, resolution, seed
    )
    factor = 2 ** (len(vq.config.block_out_channels) - 1)
    if resolution % factor:
        raise ValueError(f"--resolution {resolution} is not a multiple of the VQ downsampling factor {factor}")
    unet.register_to_config(sample_size=resolution // factor)  # generation's default latent side

    sources: pa.Table = list_sources(str(data))
    uris = sources.column("uri").to_pylist()
    fingerprints = {"encoder": enc.fingerprint(), "vqvae": _fingerprint_module(vq)}
    cache = _prepare_cache(accelerator, uris, out / "cache", enc, vq, fingerprints, resolution, embed_batch_size, show)
    usable = np.flatnonzero(np.asarray(cache["valid"]))
    skipped = len(uris) - len(usable)
    if len(usable) == 0:
        raise ValueError(f"none of the {len(uris)} images of {data} could be decoded")
    if latent_scale == "auto":
        # Stable Diffusion's recipe: scale latents to unit variance (LDM's VQ-f4 uses 1.0 as is).
        sample = np.asarray(cache["latents"][usable[:4096]], dtype=np.float64)
        latent_scale = float(1.0 / max(sample.std(), 1e-8))
    elif latent_scale is not None:
        latent_scale = float(latent_scale)
    else:
        latent_scale = base_scale

    config = {
        "data": str(data),
        "sources": len(uris),
        "init": None if init is None else str(init),
        "preset": None if init is not None else preset,
        "resolution": resolution,
        "batch_size": batch_size,
        "lr": lr,
        "warmup_steps": warmup_steps,
        "weight_decay": weight_decay,
        "max_grad_norm": max_grad_norm,
        "ema_decay": ema_decay,
        "cfg_dropout": cfg_dropout,
        "normalize_embedding": bool(projection.config.normalize),
        "seed": seed,
        "mixed_precision": mixed_precision,
        **fingerprints,
        "latent_scale": latent_scale,
        "steps": steps,
        "checkpoint_every": checkpoint_every,
        "keep_checkpoints": keep_checkpoints,
    }
    checkpoints = list_checkpoints(out) if resume else []
    config_path = out / "train_config.json"
    if checkpoints and config_path.is_file():
        _check_resume_config(config_path, config)
    if accelerator.is_main_process:
        config_path.write_text(json.dumps(config, indent=2) + "\n")

    denoiser = _Denoiser(unet, projection).train()
    ema = EMAModel(denoiser.parameters(), decay=ema_decay, use_ema_warmup=True)
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=lr, weight_decay=weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    )
    # The LR schedule counts optimizer steps itself: accelerate's scheduler wrapper would step it
    # once per process, so it is checkpointed as a plain registered object instead.
    denoiser, optimizer = accelerator.prepare(denoiser, optimizer)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)
    accelerator.register_for_checkpointing(lr_schedule)

    start_step, resumed_from = 0, None
    if checkpoints:
        start_step, resumed_from = checkpoints[-1][0], checkpoints[-1][1]
        accelerator.load_state(str(resumed_from))
        ema.to(accelerator.device)
        if show:
            print(f"resuming E-LDM training from {resumed_from} (step {start_step})")
    log_path = out / "train_log.jsonl"
    if accelerator.is_main_process:
        _truncate_log(log_path, start_step)

    noise_schedule = DDPMScheduler.from_config(scheduler_config)
    alphas = noise_schedule.alphas_cumprod.to(accelerator.device)
    order = _BatchOrder(len(usable), batch_size, seed)
    per_rank = batch_size // world
    embeddings, latents = cache["embeddings"], cache["latents"]
    losses: list[float] = []
    step = start_step
    bar = tqdm(total=steps, initial=start_step, desc="train eldm", disable=not show, unit="step")
    log = open(log_path, "a") if accelerator.is_main_process else None
    try:
        while step < steps:
            rows = usable[order.batch(step)[rank * per_rank : (rank + 1) * per_rank]]
            x0 = torch.from_numpy(np.asarray(latents[rows], dtype=np.float32)).to(accelerator.device) * latent_scale
            emb = torch.from_numpy(np.asarray(embeddings[rows], dtype=np.float32)).to(accelerator.device)
            gen = torch.Generator().manual_seed(_derive_seed(seed, "step", step, rank))
            noise = torch.randn(x0.shape, generator=gen).to(accelerator.device)
            t = torch.randint(0, len(alphas), (x0.shape[0],), generator=gen).to(accelerator.device)
            drop = (torch.rand(x0.shape[0], generator=gen) < cfg_dropout).to(accelerator.device)
            emb = torch.where(drop[:, None], torch.zeros_like(emb), emb)  # null condition for CFG
            a = alphas[t].view(-1, 1, 1, 1)
            noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
            with accelerator.autocast():
                pred = denoiser(noisy, t, emb)
            loss = F.mse_loss(pred.float(), noise)
            accelerator.backward(loss)
            if max_grad_norm > 0:
                accelerator.clip_grad_norm_(denoiser.parameters(), max_grad_norm)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(accelerator.unwrap_model(denoiser).parameters())
            step += 1
            value = float(accelerator.gather(loss.detach()[None]).mean())
            losses.append(value)
            if log is not None:
                log.write(json.dumps({"step": step, "loss": value, "lr": lr_schedule.get_last_lr()[0]}) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
            if step % checkpoint_every == 0 or step == steps:
                if log is not None:
                    log.flush()
                _save_checkpoint(accelerator, out, step, keep_checkpoints)
    except KeyboardInterrupt:
        # One process can checkpoint alone; with several, a collective save could hang on the peers.
        if world == 1 and step > start_step and not (out / "checkpoints" / f"step-{step:08d}").exists():
            _save_checkpoint(accelerator, out, step, keep_checkpoints)
            print(f"\ninterrupted: saved a checkpoint at step {step}; run again to resume")
        raise
    finally:
        bar.close()
        if log is not None:
            log.close()

    if accelerator.is_main_process:
        _write_final_model(accelerator.unwrap_model(denoiser), ema, enc, vq, scheduler_config, latent_scale, out, step)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(str(out), start_step, step, losses, None if resumed_from is None else str(resumed_from), skipped)


def _write_final_model(denoiser: _Denoiser, ema, encoder, vqvae, scheduler_config, latent_scale, out: Path, step: int) -> None:
    """Save the EMA weights in the E-LDM layout; eldm.json is removed first and written last."""
    (out / ELDM_JSON).unlink(missing_ok=True)  # a half-rewritten model must not look loadable
    final = copy.deepcopy(denoiser).cpu()
    ema.copy_to(final.parameters())
    weights = WeightsInfo(id=str(out), sha256="", random_init=False)
    model = ELDMGenerator(
        vqvae.cpu(), final.unet, final.projection, encoder.to("cpu"), scheduler_config, weights,
        latent_scale=latent_scale,
    )  # fmt: skip
    model.save_pretrained(out)
    (out / "training.json").write_text(json.dumps({"step": step}, indent=2) + "\n")
