"""Stable unCLIP generator: tiny random pipeline, save/load, determinism per view, weights errors."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from PIL import Image

from genview.generator.base import RANDOM_WEIGHTS_MARKER, WeightsNotFoundError
from genview.generator.registry import get_generator_class
from genview.generator.unclip import UnCLIPGenerator

# 3 steps with guidance and embedding noise on: every noise path of the pipeline is exercised.
FAST = {"num_inference_steps": 3, "noise_level": 100}


@pytest.fixture(scope="module")
def tiny() -> UnCLIPGenerator:
    """A tiny random unCLIP (32 px views, 32-d embeddings)."""
    return UnCLIPGenerator.from_preset("tiny", seed=0, **FAST)


@pytest.fixture(scope="module")
def sources() -> torch.Tensor:
    """Two random uint8 source images [2, 3, 40, 48]."""
    return torch.randint(0, 256, (2, 3, 40, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory) -> str:
    """The tiny pipeline written with save_pretrained."""
    out = tmp_path_factory.mktemp("unclip-tiny")
    tiny.save_pretrained(out)
    return str(out)


def test_registered():
    assert get_generator_class("unclip") is UnCLIPGenerator


def test_generate_shape_dtype_and_params(tiny, sources):
    emb = tiny.embed(sources)
    views = tiny.generate(emb, [11, 12])
    assert views.shape == (2, 3, 32, 32) and views.dtype == torch.uint8 and views.device.type == "cpu"
    assert views.float().std() > 1.0  # an image, not a constant
    assert tiny.params == {
        "noise_level": 100, "guidance_scale": 10.0, "num_inference_steps": 3, "scheduler": "ddim",
        "image_size": 32, "dtype": "float32", "compile": False, "eta": 0.0, "rescale_betas_zero_snr": False,
        "timestep_spacing": "leading", "source_crop": None,
    }
    desc = tiny.describe()
    assert desc["model"] == "unclip" and desc["weights"]["random_init"] and desc["weights"]["preset"] == "tiny"
    json.dumps(desc)


def test_view_is_independent_of_its_batch(tiny, sources):
    emb = tiny.embed(sources).repeat(2, 1)
    seeds = [101, 102, 103, 104]
    whole = tiny.generate(emb, seeds)
    split = torch.cat([tiny.generate(emb[:1], seeds[:1]), tiny.generate(emb[1:], seeds[1:])])
    assert torch.equal(whole, split)


def test_seeds_change_the_view(tiny, sources):
    emb = tiny.embed(sources[:1]).repeat(2, 1)
    a, b = tiny.generate(emb, [1, 2])
    assert (a.int() - b.int()).abs().float().mean() > 1.0
    assert torch.equal(tiny.generate(emb[:1], [1])[0], a)


def test_embeddings_raw_and_self_similarity(tiny, sources):
    emb = tiny.embed(sources)
    assert emb.shape == (2, tiny.embedding_dim) == (2, 32) and emb.dtype == torch.float32
    # Raw CLIP image embeddings, as the pipeline conditions on: not unit vectors.
    assert not torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-3)
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in sources]
    again = tiny.embed(pil)
    torch.testing.assert_close(again, emb)
    sim = UnCLIPGenerator.similarity(again, emb)
    torch.testing.assert_close(sim, torch.ones(2), atol=1e-5, rtol=0)
    assert UnCLIPGenerator.similarity(emb[:1], emb[1:]).item() < 1 - 1e-4


def test_save_load_roundtrip(tiny, saved, sources):
    for name in ("model_index.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "unet/config.json"):
        assert os.path.isfile(os.path.join(saved, name)), name
    marker = json.loads(open(os.path.join(saved, RANDOM_WEIGHTS_MARKER)).read())
    assert marker["model"] == "unclip" and marker["preset"] == "tiny"
    loaded = UnCLIPGenerator.from_pretrained(saved, **FAST)
    assert loaded.weights.random_init and loaded.weights.preset == "tiny"
    assert loaded.weights.id == saved and len(loaded.weights.sha256) == 64
    assert loaded.params == tiny.params
    emb = tiny.embed(sources)
    torch.testing.assert_close(loaded.embed(sources), emb)
    assert torch.equal(loaded.generate(emb, [5, 6]), tiny.generate(emb, [5, 6]))
    # The digest covers the files: loading twice gives the same one.
    assert UnCLIPGenerator.from_pretrained(saved, **FAST).weights.sha256 == loaded.weights.sha256


def test_hub_id_from_local_cache_only(saved, tmp_path, monkeypatch):
    """A hub id loads from a snapshot in the HF cache, without any network."""
    from huggingface_hub import constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someone--tiny-unclip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots").mkdir()
    os.symlink(saved, repo / "snapshots" / commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    gen = UnCLIPGenerator.from_pretrained("someone/tiny-unclip", **FAST)
    assert gen.weights.id == "someone/tiny-unclip" and gen.image_size == 32


def test_missing_weights_errors(tmp_path, monkeypatch):
    from huggingface_hub import constants

    with pytest.raises(WeightsNotFoundError, match="--weights") as err:
        UnCLIPGenerator.from_pretrained(str(tmp_path / "nowhere" / "unclip"))
    assert "no such directory" in str(err.value)

    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="model_index.json"):
        UnCLIPGenerator.from_pretrained(str(tmp_path / "empty"))

    cache = tmp_path / "empty-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(WeightsNotFoundError) as err:
        UnCLIPGenerator.from_pretrained("stabilityai/stable-diffusion-2-1-unclip")
    message = str(err.value)
    assert "--weights" in message and str(cache) in message and "HF_HOME" in message


def test_scheduler_switch(sources):
    ddim = UnCLIPGenerator.from_preset("tiny", seed=0, **FAST)
    dpm = UnCLIPGenerator.from_preset("tiny", seed=0, scheduler="dpm-solver++", **FAST)
    assert type(dpm.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert dpm.pipe.scheduler.config.algorithm_type == "dpmsolver++"
    assert dpm.params["scheduler"] == "dpm-solver++"
    emb = ddim.embed(sources)
    a, b = ddim.generate(emb, [7, 8]), dpm.generate(emb, [7, 8])
    assert a.shape == b.shape == (2, 3, 32, 32)
    assert b.float().std() > 1.0
    assert not torch.equal(a, b)
    # Same seed -> same weights: the preset is a function of its seed.
    assert dpm.weights.sha256 == ddim.weights.sha256


def test_image_size_and_bad_params(sources):
    gen = UnCLIPGenerator.from_preset("tiny", seed=0, image_size=64, num_inference_steps=1, guidance_scale=1.0)
    assert gen.generate(gen.embed(sources[:1]), [0]).shape == (1, 3, 64, 64)
    assert gen.params["image_size"] == 64 and gen.params["guidance_scale"] == 1.0 and not gen.guided
    with pytest.raises(ValueError, match="image_size"):
        UnCLIPGenerator.from_preset("tiny", image_size=36)
    with pytest.raises(ValueError, match="unknown unCLIP param"):
        UnCLIPGenerator.from_preset("tiny", truncation=0.5)
    with pytest.raises(ValueError, match="scheduler"):
        UnCLIPGenerator.from_preset("tiny", scheduler="heun")
    with pytest.raises(ValueError, match="timestep_spacing"):
        UnCLIPGenerator.from_preset("tiny", timestep_spacing="sideways")
    with pytest.raises(ValueError, match="noise_level"):
        UnCLIPGenerator.from_preset("tiny", noise_level=1000)
    with pytest.raises(ValueError, match="preset"):
        UnCLIPGenerator.from_preset("huge")
    with pytest.raises(ValueError, match="embeddings"):
        gen.generate(torch.zeros(1, 7), [0])


def test_supplied_latents_scaled_by_init_noise_sigma_once(sources):
    """Euler's init_noise_sigma is ~14.6 on SD's schedule: the first UNet step must see randn * sigma, not * sigma**2."""
    from genview.generator.seeding import torch_generator

    gen = UnCLIPGenerator.from_preset("tiny", seed=0, scheduler="euler", num_inference_steps=2)
    sigma = float(gen.pipe.scheduler.init_noise_sigma)
    assert sigma > 10.0
    side = gen.image_size // gen.pipe.vae_scale_factor
    expected = torch.randn((1, 4, side, side), generator=torch_generator(11)) * sigma
    # Whatever the diffusers version, prepare_latents must not scale supplied latents a second time.
    passed = gen.pipe.prepare_latents(1, 4, 32, 32, torch.float32, torch.device("cpu"), None, latents=expected)
    torch.testing.assert_close(passed, expected)
    seen = []
    scheduler = gen.pipe.scheduler
    original = scheduler.scale_model_input

    def spy(sample, timestep):
        seen.append(sample.clone())
        return original(sample, timestep)

    scheduler.scale_model_input = spy
    gen.generate(gen.embed(sources[:1]), [11])
    # Guided: the first UNet input is [x_T, x_T] (unconditional and conditional rows).
    torch.testing.assert_close(seen[0], torch.cat([expected, expected]))


def test_seed_scheduler_overrides_and_source_crop(sources):
    gen = UnCLIPGenerator.from_preset(
        "tiny", seed=0, num_inference_steps=2, rescale_betas_zero_snr=True, timestep_spacing="trailing", source_crop=24
    )
    config = gen.pipe.scheduler.config
    assert config.rescale_betas_zero_snr is True and config.timestep_spacing == "trailing"
    # Zero terminal SNR: the last cumulative alpha is 0 (it is ~0.0047 on SD 2.1's own schedule).
    assert float(gen.pipe.scheduler.alphas_cumprod[-1]) == pytest.approx(0.0, abs=1e-9)
    params = gen.params
    assert (params["rescale_betas_zero_snr"], params["timestep_spacing"], params["eta"], params["source_crop"]) == (
        True, "trailing", 0.0, 24)
    # source_crop: a centre square, resized; the same image cropped by hand embeds the same.
    image = Image.fromarray(sources[0].permute(1, 2, 0).numpy())  # 48 wide x 40 high
    by_hand = image.crop((4, 0, 44, 40)).resize((24, 24), Image.BILINEAR)
    plain = UnCLIPGenerator.from_preset("tiny", seed=0, num_inference_steps=2)
    torch.testing.assert_close(gen.embed([image]), plain.embed([by_hand]))
    # Draft decoding keeps twice the side the source is resized to: source_crop, else the CLIP crop.
    assert (gen.input_side, plain.input_side) == (24, 32)
    default = UnCLIPGenerator.from_preset("tiny", seed=0).params
    assert (default["num_inference_steps"], default["rescale_betas_zero_snr"], default["timestep_spacing"]) == (20, False, "leading")


def test_small_preset_is_vit_l_768():
    small = UnCLIPGenerator.from_preset("small", device="meta")
    encoder = small.pipe.image_encoder.config
    assert small.embedding_dim == 768
    assert (encoder.hidden_size, encoder.num_hidden_layers, encoder.patch_size) == (1024, 24, 14)
    assert small.pipe.unet.config.projection_class_embeddings_input_dim == 1536
    assert small.image_size == 768
    full = UnCLIPGenerator.from_preset("full", device="meta")
    assert full.embedding_dim == 1024 and full.pipe.image_encoder.config.num_hidden_layers == 32
