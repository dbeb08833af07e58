"""sd-image-variations: registered through genview's entry point, strict local loading, the tiny random
preset in the release's folder layout, batched rows with per-row seeds, and diffusers' own pipeline
giving the same views from the same noise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from PIL import Image

from genview.generator.base import RANDOM_WEIGHTS_MARKER, WeightsNotFoundError
from genview.generator.sd_image_variations.model import SDImageVariationsGenerator

FAST = {"num_inference_steps": 3}


@pytest.fixture(scope="module")
def tiny() -> SDImageVariationsGenerator:
    """A tiny random model (32 px views, 32-d embeddings), guided (the default guidance 7.5)."""
    return SDImageVariationsGenerator.from_preset("tiny", seed=0, **FAST)


@pytest.fixture(scope="module")
def sources() -> torch.Tensor:
    """Three random uint8 source images [3, 3, 40, 48]."""
    return torch.randint(0, 256, (3, 3, 40, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    """`genview models init sd-image-variations --preset tiny --out DIR`, run as a user runs it."""
    out = tmp_path_factory.mktemp("sdiv") / "tiny"
    done = subprocess.run([sys.executable, "-m", "genview.cli.main", "models", "init", "sd-image-variations",
                           "--preset", "tiny", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "RANDOMLY initialised sd-image-variations" in done.stdout
    return str(out)


def test_it_arrives_through_genviews_own_entry_point():
    from importlib import metadata

    from genview.generator.registry import builtin_model_names, get_generator_class, model_entries

    points = {ep.name: ep for ep in metadata.entry_points(group="genview.generators")}
    assert points["sd-image-variations"].value == "genview.generator.sd_image_variations:DECLARATION"
    assert points["sd-image-variations"].dist.name == "genview"
    entry = next(e for e in model_entries() if e.name == "sd-image-variations")
    assert entry.origin == "entry point" and entry.builtin
    assert get_generator_class("sd-image-variations") is SDImageVariationsGenerator
    assert builtin_model_names()[:5] == ["cc-icgan", "eldm", "icgan", "sd-image-variations", "unclip"]


def test_the_declaration_is_readable_without_torch():
    code = ("import sys; from genview.generator.registry import get_declaration; "
            "d = get_declaration('sd-image-variations'); print(d.params.get('guidance_scale').default, "
            "'torch' in sys.modules, 'diffusers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["7.5", "False", "False"]


def test_generate_shape_params_and_seeds(tiny, sources):
    emb = tiny.embed(sources)
    assert emb.shape == (3, 32) and emb.dtype == torch.float32
    views = tiny.generate(emb, [11, 12, 13])
    assert views.shape == (3, 3, 32, 32) and views.dtype == torch.uint8
    assert views.float().std() > 1.0
    assert tiny.params == {"num_inference_steps": 3, "guidance_scale": 7.5, "scheduler": "pndm", "image_size": 32,
                           "dtype": "float32", "compile": False}
    # Another seed, another view; the same seed, the same view.
    again = tiny.generate(emb[:1].repeat(2, 1), [11, 99])
    assert torch.equal(again[0], views[0]) and (again[1].int() - views[0].int()).abs().float().mean() > 1.0


def test_a_view_is_within_one_level_whatever_its_batch(tiny, sources):
    emb = tiny.embed(sources).repeat(2, 1)
    seeds = [101, 102, 103, 104, 105, 106]
    whole = tiny.generate(emb, seeds)
    rows = torch.cat([tiny.generate(emb[i : i + 1], seeds[i : i + 1]) for i in range(len(seeds))])
    assert (whole.int() - rows.int()).abs().max() <= 1


def test_same_views_as_diffusers_pipeline_with_the_same_noise(tiny, sources):
    """The pipeline called on the source images with our per-row latents makes our views (within a level)."""
    pipe = tiny.pipe
    pipe.scheduler = tiny.scheduler  # the sampler our generator rebuilt from the checkpoint's (PNDM)
    images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in sources]
    seeds = [7, 8, 9]
    noise = tiny.initial_latents(seeds)
    theirs = pipe(images, latents=noise, num_inference_steps=3, guidance_scale=7.5, height=32, width=32,
                  output_type="pt").images
    theirs = (theirs.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    ours = tiny.generate(tiny.embed(images), seeds)
    assert theirs.shape == ours.shape == (3, 3, 32, 32)
    assert (theirs.int() - ours.int()).abs().max() <= 1


def test_models_init_writes_the_release_layout_and_loads_strictly(saved, tiny, sources):
    index = json.loads(open(os.path.join(saved, "model_index.json")).read())
    assert index["_class_name"] == "StableDiffusionImageVariationPipeline"
    assert index["image_encoder"] == ["transformers", "CLIPVisionModelWithProjection"]
    assert index["feature_extractor"] == ["transformers", "CLIPImageProcessor"]
    for name in ("unet/config.json", "vae/config.json", "scheduler/scheduler_config.json", "image_encoder/config.json",
                 "feature_extractor/preprocessor_config.json"):
        assert os.path.isfile(os.path.join(saved, name)), name
    marker = json.loads(open(os.path.join(saved, RANDOM_WEIGHTS_MARKER)).read())
    assert marker["model"] == "sd-image-variations" and marker["preset"] == "tiny"
    loaded = SDImageVariationsGenerator.from_pretrained(saved, **FAST)
    assert loaded.weights.random_init and loaded.weights.preset == "tiny" and len(loaded.weights.sha256) == 64
    assert loaded.params == tiny.params
    emb = tiny.embed(sources)
    torch.testing.assert_close(loaded.embed(sources), emb)
    assert torch.equal(loaded.generate(emb, [5, 6, 7]), tiny.generate(emb, [5, 6, 7]))


def test_weights_errors_name_the_flag(saved, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="--weights .*no such directory"):
        SDImageVariationsGenerator.from_pretrained("lambdalabs/sd-image-variations-diffusers")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="no model_index.json"):
        SDImageVariationsGenerator.from_pretrained(str(tmp_path / "empty"))
    broken = tmp_path / "no-unet"
    broken.mkdir()
    for name in os.listdir(saved):
        if name != "unet":
            os.symlink(os.path.join(saved, name), broken / name)
    with pytest.raises(WeightsNotFoundError, match="without unet"):
        SDImageVariationsGenerator.from_pretrained(str(broken))


def test_bad_params_are_refused_by_the_declaration():
    with pytest.raises(ValueError, match="params.guidance_scale: expected a number"):
        SDImageVariationsGenerator.from_preset("tiny", guidance_scale="7")
    with pytest.raises(ValueError, match="params.scheduler: expected one of pndm, ddim, dpm-solver\\+\\+"):
        SDImageVariationsGenerator.from_preset("tiny", scheduler="heun")
    with pytest.raises(ValueError, match="image_size=36: must be a multiple of 8"):
        SDImageVariationsGenerator.from_preset("tiny", image_size=36)
    with pytest.raises(ValueError, match="unknown sd-image-variations preset"):
        SDImageVariationsGenerator.from_preset("huge")


def test_ddim_and_unguided_run(sources):
    gen = SDImageVariationsGenerator.from_preset("tiny", seed=0, scheduler="ddim", guidance_scale=1.0, num_inference_steps=2)
    assert type(gen.scheduler).__name__ == "DDIMScheduler" and not gen.guided
    assert gen.generate(gen.embed(sources[:1]), [0]).shape == (1, 3, 32, 32)


def test_models_info_counts_the_release_architecture():
    from genview.generator.cost import view_cost

    report = view_cost("sd-image-variations", "full", k=10)
    # Stable Diffusion v1's UNet (859.5 M), CLIP ViT-L/14's vision tower (303 M + projection).
    assert round(report.stage("denoiser").params / 1e6, 1) == 859.5
    assert round(report.stage("encoder").params / 1e6) == 304
    assert report.settings["image_size"] == 512 and report.stage("denoiser").calls_per_view == 50
    fewer = view_cost("sd-image-variations", "full", k=10, num_inference_steps=25, guidance_scale=1.0)
    # Half the steps, one UNet row instead of two: a quarter of the denoiser's FLOPs.
    assert fewer.stage("denoiser").flops_per_view == pytest.approx(report.stage("denoiser").flops_per_view / 4, rel=0.01)
