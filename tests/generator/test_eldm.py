"""E-LDM: networks, sampling with CFG, save/load, CompVis VQ conversion, and training on the CPU."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from diffusers import VQModel
from safetensors.torch import load_file

from genview.generator.base import WeightsNotFoundError, write_random_marker
from genview.generator.eldm import (
    GUIDANCE_PRESETS,
    CompVisConversionError,
    ELDMGenerator,
    build_vqvae,
    load_compvis_vq,
    load_vqvae,
)
from genview.generator import eldm_training
from genview.generator.eldm_training import list_checkpoints, train_eldm
from genview.generator.encoders import ConditionEncoder
from genview.generator.interpolation import interpolation_rows
from genview.generator.registry import get_generator_class
from genview.synthetic_data import make_image_folder

FAST = {"steps": 4}


@pytest.fixture(scope="module")
def tiny():
    return ELDMGenerator.from_preset("tiny", seed=0, **FAST)


def _embeddings(model: ELDMGenerator, n: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    return torch.randn(n, model.projection.config.embedding_dim, generator=gen)


def test_registered_and_full_preset_sizes_on_meta():
    assert get_generator_class("eldm") is ELDMGenerator
    full = ELDMGenerator.from_preset("full", device="meta")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert full.image_size == 256
    assert (full.unet.config.sample_size, full.unet.config.in_channels) == (64, 3)  # 3x64x64 VQ-f4 latents
    assert count(full.vqvae) == 55_322_782  # LDM VQ-f4 (ch 128, mult 1-2-4, 8192 x 3 codebook)
    assert count(full.unet) == 414_713_603  # LDM f4 UNet (224 ch, mult 1-2-3-4) + cross-attention
    assert count(full.projection) == 384 * 512 + 512
    assert count(full.encoder.network) == 21_665_664  # DINO ViT-S/16
    assert full.params == {
        "steps": 50, "guidance_preset": "imagenet", "guidance_scale": 6.0, "scheduler": "ddim",
        "normalize_embedding": True, "eta": 0.0, "latent_scale": 1.0,
    }  # fmt: skip


def test_generate_shapes_determinism_and_batch_independence(tiny):
    emb = _embeddings(tiny)
    seeds = [11, 12, 13]
    out = tiny.generate(emb, seeds)
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.uint8 and out.device.type == "cpu"
    assert torch.equal(out, tiny.generate(emb, seeds))
    alone = tiny.generate(emb[1:2], seeds[1:2])
    assert (alone.int() - out[1:2].int()).abs().max() <= 1  # same noise; only CPU batch numerics may differ
    assert not torch.equal(out, tiny.generate(emb, [21, 22, 23]))


def test_guidance_null_condition_and_presets(tiny):
    emb = _embeddings(tiny, 2)
    null = tiny.context(torch.zeros(1, emb.shape[1]))
    torch.testing.assert_close(null[0, 0], tiny.projection.proj.bias)  # the zero embedding is the null condition
    plain = ELDMGenerator.from_preset("tiny", seed=0, guidance_scale=1.0, **FAST)
    assert not torch.equal(plain.generate(emb, [1, 2]), tiny.generate(emb, [1, 2]))
    patho = ELDMGenerator.from_preset("tiny", seed=0, guidance_preset="pathology", **FAST)
    assert patho.params["guidance_scale"] == 1.75 and patho.default_alphas == [0.2, 0.4, 0.6, 0.8]
    assert tiny.params["guidance_scale"] == 6.0 and tiny.default_alphas == [0.5]
    assert GUIDANCE_PRESETS["imagenet"]["guidance_scale"] == 6.0
    dpm = ELDMGenerator.from_preset("tiny", seed=0, scheduler="dpm-solver++", **FAST)
    assert dpm.generate(emb, [1, 2]).shape == (2, 3, 32, 32)
    ancestral = ELDMGenerator.from_preset("tiny", seed=0, scheduler="euler-ancestral", **FAST)
    assert torch.equal(ancestral.generate(emb, [1, 2]), ancestral.generate(emb, [1, 2]))


def test_parameter_errors():
    with pytest.raises(ValueError, match=r"unknown eldm params \['truncation'\]"):
        ELDMGenerator.from_preset("tiny", truncation=0.5)
    with pytest.raises(ValueError, match="params.scheduler: expected one of ddim, .*, got 'plms'"):
        ELDMGenerator.from_preset("tiny", scheduler="plms")
    with pytest.raises(ValueError, match="params.steps: expected an integer in \\[1, 1000\\], got '5'"):
        ELDMGenerator.from_preset("tiny", steps="5")
    with pytest.raises(ValueError, match="params.guidance_preset: expected one of imagenet, pathology"):
        ELDMGenerator.from_preset("tiny", guidance_preset="faces")
    with pytest.raises(ValueError, match="fixed at training"):
        ELDMGenerator.from_preset("tiny", normalize_embedding=False)
    with pytest.raises(ValueError, match="unknown eldm preset"):
        ELDMGenerator.from_preset("huge")


def test_interpolation_endpoints_condition_exactly_on_primary_and_secondary(tiny):
    emb = _embeddings(tiny, 2)
    primary, secondary = emb[:1], emb[1:]
    rows, alphas = interpolation_rows(primary, secondary, [0.0, 0.5, 1.0])
    assert torch.equal(rows[0], primary[0]) and torch.equal(rows[2], secondary[0])
    seeds = [7, 7, 7]
    views = tiny.generate(rows, seeds)
    assert torch.equal(views[0], tiny.generate(primary, [7])[0])
    assert torch.equal(views[2], tiny.generate(secondary, [7])[0])
    assert not torch.equal(views[1], views[0])


def test_save_and_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "m")
    for name in ("eldm.json", "vqvae/config.json", "unet/config.json", "scheduler/scheduler_config.json",
                 "condition_projection/config.json", "condition_projection/diffusion_pytorch_model.safetensors",
                 "encoder/encoder.json", "encoder/dino_vit.pth"):  # fmt: skip
        assert (tmp_path / "m" / name).is_file(), name
    write_random_marker(tmp_path / "m", "eldm", "tiny", 0)
    back = ELDMGenerator.from_pretrained(str(tmp_path / "m"), **FAST)
    assert back.weights.random_init and back.weights.preset == "tiny" and len(back.weights.sha256) == 64
    emb = _embeddings(tiny, 2)
    assert torch.equal(back.generate(emb, [3, 4]), tiny.generate(emb, [3, 4]))
    torch.testing.assert_close(back.embed(torch.zeros(1, 3, 40, 40, dtype=torch.uint8)), tiny.embed(torch.zeros(1, 3, 40, 40, dtype=torch.uint8)))
    sched = json.loads((tmp_path / "m" / "scheduler" / "scheduler_config.json").read_text())
    assert (sched["_class_name"], sched["beta_start"], sched["beta_end"]) == ("DDIMScheduler", 0.0015, 0.0195)


def test_from_pretrained_errors_name_the_flag(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="--weights .*no such E-LDM folder"):
        ELDMGenerator.from_pretrained(str(tmp_path / "nope"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "unet").mkdir()
    with pytest.raises(WeightsNotFoundError, match="missing eldm.json, vqvae, scheduler, condition_projection, encoder"):
        ELDMGenerator.from_pretrained(str(tmp_path / "half"))


# ---- CompVis vq-f4 checkpoints -------------------------------------------------------------

_TO_COMPVIS = [  # diffusers -> CompVis (taming) names, written from the taming module layout
    (r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.0\.", r"\1.mid.block_1."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.1\.", r"\1.mid.block_2."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.", r"\1.mid.attn_1.norm."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_(q|k|v)\.", r"\1.mid.attn_1.\2."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.to_out\.0\.", r"\1.mid.attn_1.proj_out."),
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2."),
    (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.", r"encoder.down.\1.downsample.conv."),
    (r"\.conv_shortcut\.", ".nin_shortcut."),
]


def _to_compvis(model: VQModel) -> dict[str, torch.Tensor]:
    levels = len(model.config.block_out_channels)
    out = {}
    for key, value in model.state_dict().items():
        new = key
        m = re.match(r"^decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.", key)
        if m:  # CompVis numbers decoder levels from the highest resolution
            level = levels - 1 - int(m[1])
            part = f"block.{m[3]}." if m[2] == "resnets" else "upsample."
            new = f"decoder.up.{level}.{part}" + key[m.end():]
        for pattern, repl in _TO_COMPVIS:
            new = re.sub(pattern, repl, new)
        if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", new):
            value = value[:, :, None, None]  # CompVis attention projections are 1x1 convolutions
        out[new] = value
    return out


@pytest.fixture(scope="module")
def small_vq():
    torch.manual_seed(0)
    return VQModel(
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        block_out_channels=[32, 32, 64], layers_per_block=1, latent_channels=3, num_vq_embeddings=16,
        norm_num_groups=32, sample_size=32, scaling_factor=1.0,
    ).eval()  # fmt: skip


def test_compvis_vq_checkpoint_loads_as_diffusers_vqmodel(small_vq, tmp_path):
    state = _to_compvis(small_vq)
    assert "decoder.up.0.block.1.conv1.weight" in state and "encoder.mid.attn_1.q.weight" in state
    state["loss.discriminator.main.0.weight"] = torch.zeros(2)  # training-only weights are skipped
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": state, "global_step": 10}, path)
    loaded = load_compvis_vq(path, sample_size=32)
    assert loaded.config.block_out_channels == [32, 32, 64] and loaded.config.layers_per_block == 1
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(loaded.encode(x).latents).sample, small_vq.decode(small_vq.encode(x).latents).sample)
    (tmp_path / "vqdir").mkdir()
    path.rename(tmp_path / "vqdir" / "model.ckpt")
    assert isinstance(load_vqvae(tmp_path / "vqdir"), VQModel)


def test_compvis_conversion_lists_unmapped_keys(small_vq, tmp_path):
    state = _to_compvis(small_vq)
    state["encoder.down.1.attn.0.q.weight"] = torch.zeros(32, 32, 1, 1)  # attention outside the mid block
    torch.save({"state_dict": state}, tmp_path / "model.ckpt")
    with pytest.raises(CompVisConversionError, match=r"unmapped CompVis keys: \['encoder.down.1.attn.0.q.weight'\]"):
        load_compvis_vq(tmp_path / "model.ckpt")


# ---- training --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("eldm-train")
    make_image_folder(root / "data", classes=4, per_class=4, size=32, seed=3)  # 16 coloured-shape images
    ConditionEncoder.dino("tiny", seed=0).save(root / "encoder")
    torch.manual_seed(0)
    build_vqvae("tiny").save_pretrained(str(root / "vqvae"))
    common = dict(encoder=str(root / "encoder"), vqvae=str(root / "vqvae"), preset="tiny", latent_scale="auto",
                  warmup_steps=10, progress=False)  # fmt: skip
    return root, common


@pytest.fixture(scope="module")
def trained(parts):
    """300 steps, interrupted at 150 and resumed from that checkpoint."""
    root, common = parts
    first = train_eldm(str(root / "data"), root / "run", steps=150, batch_size=16, lr=1e-3, checkpoint_every=50, **common)
    cache_mtime = (root / "run" / "cache" / "latents.npy").stat().st_mtime_ns
    second = train_eldm(str(root / "data"), root / "run", steps=300, batch_size=16, lr=1e-3, checkpoint_every=50, **common)
    return root / "run", first, second, cache_mtime


def test_training_loss_falls_and_resume_continues(trained):
    run, first, second, cache_mtime = trained
    assert (first.start_step, first.step, first.resumed_from) == (0, 150, None)
    assert second.start_step == 150 and second.resumed_from.endswith("step-00000150") and second.step == 300
    losses = np.array(first.losses + second.losses)
    assert len(losses) == 300 and np.isfinite(losses).all()
    assert losses[-20:].mean() < 0.7 * losses[:20].mean(), (losses[:20].mean(), losses[-20:].mean())
    assert [step for step, _ in list_checkpoints(run)] == [250, 300]  # newest two kept
    assert (run / "cache" / "latents.npy").stat().st_mtime_ns == cache_mtime  # frozen outputs computed once
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, 301))


def test_trained_run_loads_and_generates(trained):
    run = trained[0]
    model = get_generator_class("eldm").from_pretrained(str(run), **FAST)
    assert not model.weights.random_init and model.image_size == 32
    assert model.latent_scale != 1.0  # "auto" recorded in eldm.json
    from genview.synthetic_data import shape_image
    import random

    sources = [shape_image(random.Random(i), (200, 40, 40), 32) for i in range(2)]
    emb = model.embed(sources)
    assert emb.shape == (2, 32)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    views = model.generate(emb, [5, 6])
    assert views.shape == (2, 3, 32, 32) and views.dtype == torch.uint8
    assert torch.equal(views, model.generate(emb, [5, 6]))
    # The final folder holds the EMA weights, not the live ones of the last checkpoint.
    live = load_file(run / "checkpoints" / "step-00000300" / "model.safetensors")
    ema = load_file(run / "unet" / "diffusion_pytorch_model.safetensors")
    key = "conv_in.weight"
    assert not torch.equal(live[f"unet.{key}"], ema[key])


def test_resume_is_exact(parts, monkeypatch):
    root, common = parts
    kw = dict(common, batch_size=8, lr=1e-3, checkpoint_every=6)
    straight = train_eldm(str(root / "data"), root / "straight", steps=12, **kw)
    part1 = train_eldm(str(root / "data"), root / "split", steps=6, **kw)
    part2 = train_eldm(str(root / "data"), root / "split", steps=12, **kw)
    assert part2.start_step == 6
    assert part1.losses + part2.losses == straight.losses  # bit-identical trajectory
    a = load_file(root / "straight" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(root / "split" / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

    # Ctrl-C mid-run: a checkpoint is written at the step reached, and a rerun resumes from it exactly.
    original = eldm_training._BatchOrder.batch

    def interrupt_at_5(self, step):
        if step == 5:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(eldm_training._BatchOrder, "batch", interrupt_at_5)
    with pytest.raises(KeyboardInterrupt):
        train_eldm(str(root / "data"), root / "ctrl-c", steps=12, **dict(kw, checkpoint_every=100))
    assert [s for s, _ in list_checkpoints(root / "ctrl-c")] == [5]
    monkeypatch.setattr(eldm_training._BatchOrder, "batch", original)
    rest = train_eldm(str(root / "data"), root / "ctrl-c", steps=12, **dict(kw, checkpoint_every=100))
    assert rest.start_step == 5 and rest.losses == straight.losses[5:]

    with pytest.raises(ValueError, match=r"batch_size: was 8, now 4"):
        train_eldm(str(root / "data"), root / "split", steps=14, **dict(kw, batch_size=4))
    fresh = train_eldm(str(root / "data"), root / "split", steps=2, resume=False, **dict(kw, batch_size=4))
    assert fresh.start_step == 0 and [s for s, _ in list_checkpoints(root / "split")] == [2]


def test_training_argument_errors(parts):
    root, common = parts
    with pytest.raises(ValueError, match="--encoder is required"):
        train_eldm(str(root / "data"), root / "x", vqvae=common["vqvae"], steps=1)
    with pytest.raises(ValueError, match="--vqvae is required"):
        train_eldm(str(root / "data"), root / "x", encoder=common["encoder"], steps=1)
