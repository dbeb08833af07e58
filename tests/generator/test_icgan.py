"""IC-GAN / CC-IC-GAN: published checkpoint layout, strict loading, determinism, truncation, labels."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch
from PIL import Image

from genview.generator.base import WeightsNotFoundError, write_random_marker
from genview.generator.icgan import GENERATOR_FILE, STATE_FILE, CCICGANGenerator, ICGANGenerator
from genview.generator.registry import get_generator_class


def ic_gan_generator_shapes(class_cond: bool) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ic_gan's BigGAN_PyTorch/BigGAN.py Generator for the ImageNet 256 configs.

    Derived here from ic_gan's code, independently of genview's network: G_arch(96, "64")[256],
    hier with dim_z=120 (7 slots of 17), shared_dim=128, shared_dim_feat=512, SNLinear(2048, 512),
    ccbn gain/bias = SNLinear(input_sz_bn, ch, bias=False), SN buffers u0 [1, out] and sv0 [1].
    """
    ch, ins, outs, resolutions = 96, [16, 16, 8, 8, 4, 2], [16, 8, 8, 4, 2, 1], [8, 16, 32, 64, 128, 256]
    chunk = 120 // 7
    cond = chunk + 512 + (128 if class_cond else 0)
    shapes: dict[str, tuple[int, ...]] = {"shared.weight": (1000, 128)}

    def sn(prefix: str, weight: tuple[int, ...], bias: bool) -> None:
        shapes[f"{prefix}.weight"] = weight
        if bias:
            shapes[f"{prefix}.bias"] = (weight[0],)
        shapes[f"{prefix}.u0"] = (1, weight[0])
        shapes[f"{prefix}.sv0"] = (1,)

    sn("shared_feat", (512, 2048), True)
    sn("linear", (16 * ch * 4 * 4, chunk), True)
    for index, (i, o, res) in enumerate(zip(ins, outs, resolutions)):
        c_in, c_out, block = i * ch, o * ch, f"blocks.{index}.0"
        sn(f"{block}.conv1", (c_out, c_in, 3, 3), True)
        sn(f"{block}.conv2", (c_out, c_out, 3, 3), True)
        sn(f"{block}.conv_sc", (c_out, c_in, 1, 1), True)
        for bn, channels in (("bn1", c_in), ("bn2", c_out)):
            sn(f"{block}.{bn}.gain", (channels, cond), False)
            sn(f"{block}.{bn}.bias", (channels, cond), False)
            shapes[f"{block}.{bn}.stored_mean"] = (channels,)
            shapes[f"{block}.{bn}.stored_var"] = (channels,)
        if res == 64:
            attn = f"blocks.{index}.1"
            sn(f"{attn}.theta", (c_out // 8, c_out, 1, 1), False)
            sn(f"{attn}.phi", (c_out // 8, c_out, 1, 1), False)
            sn(f"{attn}.g", (c_out // 2, c_out, 1, 1), False)
            sn(f"{attn}.o", (c_out, c_out // 2, 1, 1), False)
            shapes[f"{attn}.gamma"] = ()
    for name in ("gain", "bias", "stored_mean", "stored_var"):
        shapes[f"output_layer.0.{name}"] = (ch,)
    sn("output_layer.2", (3, ch, 3, 3), True)
    return shapes


@pytest.mark.parametrize("cls, class_cond, params_m", [(ICGANGenerator, False, 90.0), (CCICGANGenerator, True, 92.3)])
def test_full_preset_matches_published_checkpoint_layout(cls, class_cond, params_m):
    model = cls.from_preset("full", device="meta")
    state = model.network.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == ic_gan_generator_shapes(class_cond)
    assert len(state) == 198
    n_params = sum(p.numel() for p in model.network.parameters())
    assert abs(n_params / 1e6 - params_m) < 0.05
    cfg = model.network.config
    assert (cfg.z_dim, cfg.num_slots, cfg.z_chunk_size) == (119, 7, 17)
    assert model.image_size == 256 and model.embedding_dim == 2048
    assert model.weights.random_init and model.weights.preset == "full"
    # The whole forward runs on "meta" (shapes only): what parameter/FLOP counting needs.
    z = torch.zeros(2, 119, device="meta")
    feats = torch.zeros(2, 2048, device="meta")
    labels = torch.zeros(2, dtype=torch.long, device="meta") if class_cond else None
    assert model.network(z, feats, labels).shape == (2, 3, 256, 256)
    assert model.encoder(torch.zeros(2, 3, 224, 224, device="meta")).shape == (2, 2048)


def test_registry_and_class_settings():
    assert get_generator_class("icgan") is ICGANGenerator
    assert get_generator_class("cc-icgan") is CCICGANGenerator
    assert CCICGANGenerator.needs_labels and not ICGANGenerator.needs_labels
    assert ICGANGenerator.from_preset("tiny").params == {"truncation": 0.8, "truncation_mode": "scaled", "dtype": "float32"}
    assert CCICGANGenerator.from_preset("tiny").params["truncation"] == 1.0


def _sources() -> list[Image.Image]:
    gen = torch.Generator().manual_seed(3)
    sizes = [(40, 30), (24, 48), (32, 32)]
    return [
        Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=gen, dtype=torch.uint8).numpy())
        for w, h in sizes
    ]


def test_tiny_generation_shape_speed_and_determinism():
    model = ICGANGenerator.from_preset("tiny", seed=0)
    emb = model.embed(_sources())
    rows = emb[[0, 1, 2, 0, 1, 2, 0, 1]]
    start = time.perf_counter()
    images = model.generate(rows, list(range(8)))
    elapsed = time.perf_counter() - start
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.uint8 and images.device.type == "cpu"
    assert elapsed < 1.0
    assert images.float().std() > 5  # not a constant image
    again = ICGANGenerator.from_preset("tiny", seed=0).generate(rows, list(range(8)))
    assert torch.equal(images, again)
    other_seed = ICGANGenerator.from_preset("tiny", seed=1).generate(rows, list(range(8)))
    assert not torch.equal(images, other_seed)


@pytest.mark.parametrize("cls", [ICGANGenerator, CCICGANGenerator])
def test_batching_does_not_change_views(cls):
    model = cls.from_preset("tiny", seed=2)
    emb = model.embed(_sources())[[0, 1, 2, 2, 1, 0]]
    seeds = [11, 12, 13, 14, 15, 16]
    labels = torch.tensor([0, 3, 9, 9, 3, 0]) if cls.needs_labels else None
    whole = model.generate(emb, seeds, labels)
    parts = []
    for lo, hi in [(0, 1), (1, 3), (3, 6)]:
        parts.append(model.generate(emb[lo:hi], seeds[lo:hi], None if labels is None else labels[lo:hi]))
    # Batched on every device: a row's noise is its own, its pixels within one level whatever the batch.
    assert torch.equal(model.sample_z(seeds[1:3]), model.sample_z(seeds)[1:3])
    assert (whole.int() - torch.cat(parts).int()).abs().max() <= 1
    # Same seed, same embedding -> same view; another seed -> another view.
    assert (model.generate(emb[:1], [11], None if labels is None else labels[:1]).int() - whole[:1].int()).abs().max() <= 1


def test_spectral_norms_are_computed_once_at_load_with_identical_output(monkeypatch):
    from genview.generator import biggan

    model = ICGANGenerator.from_preset("tiny", seed=4)
    sn_layers = [m for m in model.network.modules() if isinstance(m, (biggan.SNConv2d, biggan.SNLinear))]
    assert sn_layers and all(m.weight_sn is not None for m in sn_layers)
    emb = model.embed(_sources())
    cached = model.generate(emb, [1, 2, 3])
    # Without the cache every forward recomputes each norm: same bytes.
    for m in sn_layers:
        m.weight_sn = None
    assert torch.equal(model.generate(emb, [1, 2, 3]), cached)
    assert biggan.cache_spectral_norms(model.network) == len(sn_layers)
    # With the cache a forward never runs the power iteration.
    monkeypatch.setattr(biggan, "_normalized_weight", lambda *a: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert torch.equal(model.generate(emb, [1, 2, 3]), cached)
    # The cache is not part of the checkpoint, and loading other weights drops it (no stale norms).
    assert not any("weight_sn" in key for key in model.network.state_dict())
    monkeypatch.undo()
    model.network.load_state_dict(ICGANGenerator.from_preset("tiny", seed=5).network.state_dict())
    assert all(m.weight_sn is None for m in sn_layers)
    assert not torch.equal(model.generate(emb, [1, 2, 3]), cached)


def test_dtype_auto_and_tf32_compile_are_recorded_as_run_on_cpu():
    model = ICGANGenerator.from_preset("tiny", seed=0, compile=True, tf32=True)
    # On CPU: float32; TF32 and compile are CUDA settings, recorded only where they apply.
    assert model.params == {"truncation": 0.8, "truncation_mode": "scaled", "dtype": "float32"}
    assert model._forward is model.network and not model._tf32
    emb = model.embed(_sources()[:1])
    assert model.generate(emb, [0]).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="dtype"):
        ICGANGenerator.from_preset("tiny", dtype="float8")


def test_truncation_scales_z_and_changes_views():
    low = ICGANGenerator.from_preset("tiny", seed=0, truncation=0.5)
    high = ICGANGenerator.from_preset("tiny", seed=0, truncation=1.0)
    seeds = list(range(200))
    z_low, z_high = low.sample_z(seeds), high.sample_z(seeds)
    assert z_low.shape == (200, low.network.config.z_dim)
    assert torch.allclose(z_low * 2, z_high)
    assert abs(z_high.std().item() - 1.0) < 0.05
    emb = low.embed(_sources()[:2])
    assert not torch.equal(low.generate(emb, [1, 2]), high.generate(emb, [1, 2]))
    with pytest.raises(ValueError, match="truncation"):
        ICGANGenerator.from_preset("tiny", truncation=-1)


def test_output_maps_minus_one_one_to_uint8(monkeypatch):
    model = ICGANGenerator.from_preset("tiny")
    values = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.5, 1.0, 2.0])
    fake = values.view(1, 1, 1, -1).expand(1, 3, 32, 7)
    monkeypatch.setattr(model.network, "forward", lambda z, feats, labels=None: fake)
    out = model.generate(torch.zeros(1, 64), [0])
    assert out[0, 0, 0].tolist() == [0, 0, 0, 128, 191, 255, 255]


def test_cc_icgan_labels_are_required_and_checked():
    model = CCICGANGenerator.from_preset("tiny")
    emb = model.embed(_sources()[:2])
    with pytest.raises(ValueError, match="needs class labels"):
        model.generate(emb, [0, 1])
    with pytest.raises(ValueError, match=r"out of range \[0, 10\): \[10\]"):
        model.generate(emb, [0, 1], torch.tensor([1, 10]))
    with pytest.raises(ValueError, match="integer"):
        model.generate(emb, [0, 1], torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        model.generate(emb, [0, 1], torch.tensor([1]))
    a = model.generate(emb, [0, 1], torch.tensor([1, 2]))
    b = model.generate(emb, [0, 1], torch.tensor([1, 3]))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


def test_icgan_ignores_labels():
    model = ICGANGenerator.from_preset("tiny")
    emb = model.embed(_sources()[:2])
    assert torch.equal(model.generate(emb, [4, 5]), model.generate(emb, [4, 5], torch.tensor([1, 2])))


def test_generate_checks_inputs():
    model = ICGANGenerator.from_preset("tiny")
    with pytest.raises(ValueError, match=r"\[B, 64\]"):
        model.generate(torch.zeros(2, 63), [0, 1])
    with pytest.raises(ValueError, match="seeds"):
        model.generate(torch.zeros(2, 64), [0])
    with pytest.raises(ValueError, match="params.steps: unknown icgan param; known: truncation"):
        ICGANGenerator.from_preset("tiny", steps=5)
    with pytest.raises(ValueError, match=r"params.truncation: expected a number \(float\) in \[0, 10\], got -5"):
        ICGANGenerator.from_preset("tiny", truncation=-5)
    with pytest.raises(ValueError, match="unknown icgan preset"):
        ICGANGenerator.from_preset("huge")


@pytest.mark.parametrize("cls, encoder_file", [(ICGANGenerator, "swav_800ep_pretrain.pth.tar"), (CCICGANGenerator, "resnet50-19c8e357.pth")])
def test_save_load_roundtrip(tmp_path, cls, encoder_file):
    model = cls.from_preset("tiny", seed=4)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([GENERATOR_FILE, STATE_FILE, encoder_file])
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    config = state["config"]
    assert config["resolution"] == 32 and config["G_ch"] == 8 and config["hier"] is True
    assert config["class_cond"] is cls.class_cond and config["instance_cond"] is True
    assert config["feature_extractor"] == cls.default_feature_extractor
    assert {"G_attn", "shared_dim", "shared_dim_feat", "dim_z", "n_classes"} <= set(config)

    loaded = cls.from_pretrained(str(tmp_path), truncation=0.7)
    assert loaded.params["truncation"] == 0.7
    assert loaded.weights.id == str(tmp_path) and not loaded.weights.random_init
    assert len(loaded.weights.sha256) == 64
    images = _sources()
    labels = torch.tensor([1, 2, 3]) if cls.needs_labels else None
    assert torch.equal(model.embed(images), loaded.embed(images))
    emb = model.embed(images)
    reference = cls.from_preset("tiny", seed=4, truncation=0.7)
    assert torch.equal(reference.generate(emb, [7, 8, 9], labels), loaded.generate(emb, [7, 8, 9], labels))

    write_random_marker(tmp_path, cls.model_name, "tiny", 4)
    marked = cls.from_pretrained(str(tmp_path))
    assert marked.weights.random_init and marked.weights.preset == "tiny"
    assert marked.weights.sha256 == loaded.weights.sha256  # the marker is not a weight file


def test_strict_load_reports_missing_extra_and_misshaped_keys(tmp_path):
    ICGANGenerator.from_preset("tiny").save_pretrained(tmp_path)
    state = torch.load(tmp_path / GENERATOR_FILE, weights_only=True)

    missing = dict(state)
    del missing["blocks.0.0.conv1.u0"]
    torch.save(missing, tmp_path / GENERATOR_FILE)
    with pytest.raises(ValueError, match=r"G_ema_best\.pth.*missing keys: blocks\.0\.0\.conv1\.u0"):
        ICGANGenerator.from_pretrained(str(tmp_path))

    extra = dict(state, **{"blocks.0.0.extra.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / GENERATOR_FILE)
    with pytest.raises(ValueError, match=r"unexpected keys: blocks\.0\.0\.extra\.weight"):
        ICGANGenerator.from_pretrained(str(tmp_path))

    misshaped = dict(state, **{"linear.bias": torch.zeros(3)})
    torch.save(misshaped, tmp_path / GENERATOR_FILE)
    with pytest.raises(ValueError, match=r"shape mismatches: linear\.bias: file \(3,\)"):
        ICGANGenerator.from_pretrained(str(tmp_path))


def test_wrong_model_for_checkpoint(tmp_path):
    CCICGANGenerator.from_preset("tiny").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="use --model cc-icgan"):
        ICGANGenerator.from_pretrained(str(tmp_path))


def test_missing_weights_name_the_flags(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="--weights"):
        ICGANGenerator.from_pretrained(str(tmp_path / "nowhere"))
    with pytest.raises(WeightsNotFoundError, match=r"G_ema\*\.pth.*--weights"):
        ICGANGenerator.from_pretrained(str(tmp_path))
    ICGANGenerator.from_preset("tiny").save_pretrained(tmp_path)
    encoder = tmp_path / "swav_800ep_pretrain.pth.tar"
    moved = tmp_path.parent / f"{tmp_path.name}-encoder.pth.tar"
    shutil.move(encoder, moved)
    with pytest.raises(WeightsNotFoundError, match=r"swav_800ep_pretrain\.pth\.tar.*--encoder-weights"):
        ICGANGenerator.from_pretrained(str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="--encoder-weights"):
        ICGANGenerator.from_pretrained(str(tmp_path), encoder_weights=str(tmp_path / "absent.pth"))
    loaded = ICGANGenerator.from_pretrained(str(tmp_path), encoder_weights=str(moved))
    assert loaded.embed(_sources()[:1]).shape == (1, 64)


def test_ic_gan_release_names_and_best_fid_choice(tmp_path):
    first = ICGANGenerator.from_preset("tiny", seed=0)
    second = ICGANGenerator.from_preset("tiny", seed=1)
    for model, suffix, fid in [(first, "best0", 12.0), (second, "best1", 9.5)]:
        model.save_pretrained(tmp_path / suffix)
        shutil.move(tmp_path / suffix / GENERATOR_FILE, tmp_path / f"G_ema_{suffix}.pth")
        state = torch.load(tmp_path / suffix / STATE_FILE, weights_only=True)
        state["best_FID"] = fid
        torch.save(state, tmp_path / f"state_dict_{suffix}.pth")
    shutil.move(tmp_path / "best0" / "swav_800ep_pretrain.pth.tar", tmp_path / "swav_800ep_pretrain.pth.tar")
    loaded = ICGANGenerator.from_pretrained(str(tmp_path))
    emb = loaded.embed(_sources()[:2])
    # ic_gan keeps the checkpoint with the lowest best_FID: best1, i.e. `second`'s generator.
    assert torch.equal(loaded.generate(emb, [3, 4]), second.generate(emb, [3, 4]))


def test_ic_gan_state_file_with_python_objects_loads(tmp_path):
    ICGANGenerator.from_preset("tiny").save_pretrained(tmp_path)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    # ic_gan's trainer stores the activation module in the config and numpy metrics beside it.
    state["config"]["G_activation"] = torch.nn.ReLU(inplace=True)
    torch.save(state, tmp_path / STATE_FILE)
    assert ICGANGenerator.from_pretrained(str(tmp_path)).image_size == 32
    state["best_FID"] = np.float64(7.5)
    torch.save(state, tmp_path / STATE_FILE)
    with pytest.warns(UserWarning, match="full unpickling"):
        ICGANGenerator.from_pretrained(str(tmp_path))


def test_truncation_mode_truncated_matches_ic_gan_demo():
    """truncated: N(0, 1) cut to [-2t, 2t] at unit scale (ic_gan's demo, seed 000's script with t=0.7)."""
    from scipy import stats

    gen = ICGANGenerator.from_preset("tiny", seed=0, truncation=0.7, truncation_mode="truncated")
    assert gen.params["truncation_mode"] == "truncated"
    z = gen.sample_z(list(range(400))).double().flatten()
    assert float(z.abs().max()) <= 1.4 + 1e-6
    # Same distribution as scipy's truncnorm(-1.4, 1.4) (KS test), unlike 0.7 * N(0, 1) (std 0.7).
    assert stats.kstest(z.numpy(), stats.truncnorm(-1.4, 1.4).cdf).pvalue > 0.01
    assert abs(float(z.std()) - stats.truncnorm(-1.4, 1.4).std()) < 0.02
    scaled = ICGANGenerator.from_preset("tiny", seed=0, truncation=0.7).sample_z(list(range(400))).double().flatten()
    assert stats.kstest(scaled.numpy(), stats.truncnorm(-1.4, 1.4).cdf).pvalue < 1e-6
    # Deterministic per seed, independent of the batch.
    torch.testing.assert_close(gen.sample_z([5]), gen.sample_z([3, 5])[1:])
    with pytest.raises(ValueError, match="truncation_mode"):
        ICGANGenerator.from_preset("tiny", truncation_mode="clamped")
