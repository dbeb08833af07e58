"""Paper recipes: each resolves to the numbers its paper (or the paper's released code) wrote down.

The expected values below are copied from the seeds in ../shared/seeds/ and the first seed's released
scripts, with the sentence they come from; a recipe that drifts from its paper fails here.
"""

from __future__ import annotations

import json

import pytest

from genview.cli.main import main
from genview.datastore.store import Store
from genview.pipeline import GenerateSpec
from genview.recipes import RECIPES, apply_recipe, get_recipe


def resolved(name: str, **given) -> GenerateSpec:
    """The spec a recipe resolves to with nothing else given (source/out are placeholders)."""
    return GenerateSpec(source="src", out="out", recipe=name, **given)


def test_genssl_unclip_is_the_released_script():
    spec = resolved("genssl-unclip")
    # StableUnCLIPImg2ImgPipeline.from_pretrained("stabilityai/stable-diffusion-2-1-unclip-small", torch_dtype=torch.float16)
    assert spec.model == "unclip" and spec.weights == "stabilityai/stable-diffusion-2-1-unclip-small"
    assert spec.params["dtype"] == "float16"
    # DDIMScheduler.from_config(config, rescale_betas_zero_snr=True, timestep_spacing="trailing")
    assert spec.params["scheduler"] == "ddim"
    assert spec.params["rescale_betas_zero_snr"] is True and spec.params["timestep_spacing"] == "trailing"
    # --steps default 10, --ddim_eta default 0.0; guidance and noise_level: the pipeline's defaults 10 and 0
    assert spec.params["num_inference_steps"] == 10 and spec.params["eta"] == 0.0
    assert spec.params["guidance_scale"] == 10.0 and spec.params["noise_level"] == 0
    # CenterCropLongEdge() + Resize(224) on the source; transforms.Resize((224, 224)) on the outputs
    assert spec.params["source_crop"] == 224 and spec.view_size == 224
    assert "image_size" not in spec.params  # not passed by the script: the native 768 px
    # "we generate 10 images per each image in the ImageNet training set offline" (Sec. 4)
    assert spec.k == 10 and spec.best_of == 1 and not spec.interpolate
    # --img_size 224: a bilinear resize; img.save(path) with no quality: PIL's JPEG default 75
    assert spec.resize_filter == "bilinear" and spec.quality == 75 and spec.format == "jpg"
    recipe = get_recipe("genssl-unclip")
    # One generator per run, consumed across batches: the same distribution, never the same pixels.
    assert "in distribution, not per pixel" in recipe.summary and "exactly" not in recipe.summary
    assert any("in distribution, not per pixel" in line for line in recipe.silent)
    assert any("--img_size" in line for line in recipe.cited) and not any("img_save_size" in c for c in recipe.cited)
    assert any("noise order" in line for line in recipe.silent)
    # Flags still win over the recipe.
    assert resolved("genssl-unclip", quality=90, resize_filter="bicubic").quality == 90


def test_genssl_icgan_samples_as_its_code_without_the_keep_last_bug():
    spec = resolved("genssl-icgan")
    # config.truncation = 0.7, stochastic_truncation False; noise = truncnorm.rvs(-2*0.7, 2*0.7)
    assert spec.model == "icgan"
    assert spec.params == {"truncation": 0.7, "truncation_mode": "truncated"}
    # pil_img.thumbnail((224, 224)) (bicubic); 10 views per image; saved with PIL's default JPEG quality 75
    assert spec.view_size == 224 and spec.k == 10 and spec.resize_filter == "bicubic" and spec.quality == 75
    # num_samples = 16 drawn, only the last kept: a bug, not a selection -> one draw per view, no best-of
    assert spec.best_of == 1
    assert any("16" in line and "bug" in line for line in get_recipe("genssl-icgan").silent)


def test_daicgan_sigmas():
    # "we set truncation sigma = 0.8 and 1.0 for IC-GAN and CC-IC-GAN respectively" (Sec. 4.1)
    icgan, cc = resolved("daicgan-icgan"), resolved("daicgan-cc-icgan")
    assert (icgan.model, icgan.params["truncation"], icgan.params["truncation_mode"]) == ("icgan", 0.8, "scaled")
    assert (cc.model, cc.params["truncation"], cc.params["truncation_mode"]) == ("cc-icgan", 1.0, "scaled")
    # best-of-N is not part of DA IC-GAN's training augmentation (footnote 4: Fake-IN test sets only)
    assert icgan.best_of == cc.best_of == 1
    # the paper samples on the fly: it says no K, and the recipe says so
    assert any(line.startswith("K:") for line in get_recipe("daicgan-icgan").silent)


def test_daicgan_fake_in_is_best_of_20():
    # footnote 4: "for each IN image we generate a set of 20 samples, from which we chose the one most similar"
    spec = resolved("daicgan-fake-in")
    assert (spec.model, spec.k, spec.best_of, spec.params["truncation"]) == ("icgan", 1, 20, 0.8)
    # "Fake-IN CC: containing 50K images generated with the CC-IC-GAN conditioned on the IN validation set"
    cc = resolved("daicgan-fake-in-cc")
    assert (cc.model, cc.k, cc.best_of, cc.params["truncation"], cc.params["truncation_mode"]) == \
        ("cc-icgan", 1, 20, 1.0, "scaled")
    assert "daicgan-fake-in-cc" in get_recipe("daicgan-fake-in").table  # the hint names a recipe that runs


def test_gensis_imagenet():
    # "we synthesize four generative augmentations for each real image"; "classifier-free guidance of 6 with 50 DDIM steps"
    spec = resolved("gensis-imagenet")
    assert (spec.model, spec.k) == ("eldm", 4)
    assert (spec.params["steps"], spec.params["scheduler"], spec.params["guidance_scale"]) == (50, "ddim", 6.0)
    assert not spec.interpolate
    interp = resolved("gensis-imagenet-interp")
    # alpha = 0.5; "a random secondary real image out of the whole dataset"; linear interpolation (9.4)
    assert interp.interpolate and interp.alphas == [0.5] and interp.pair_across is None
    assert interp.interpolation == "lerp" and interp.k == 1 and interp.params["guidance_scale"] == 6.0


def test_gensis_pathology():
    # "a guidance weight of 1.75 with 50 DDIM steps"; one generative augmentation per image
    spec = resolved("gensis-pathology")
    assert (spec.model, spec.k, spec.params["steps"], spec.params["guidance_scale"]) == ("eldm", 1, 50, 1.75)
    interp = resolved("gensis-pathology-interp")
    # "a random alpha from {0.2, 0.4, 0.6, 0.8}"; "a single interpolated image for each primary image and given ratio"
    assert interp.interpolate and interp.alphas == [0.2, 0.4, 0.6, 0.8] and interp.k == 4
    # "a random secondary real image (crop) from a different whole slide image"
    assert interp.pair_across == "slide" and interp.interpolation == "lerp"
    assert interp.params["guidance_scale"] == 1.75
    assert any("slide" in line for line in get_recipe("gensis-pathology-interp").silent)
    # The paper's other sentence: "one generative augmentation and one interpolated augmentation for each image"
    assert any("one interpolated augmentation for each image" in line for line in get_recipe("gensis-pathology-interp").silent)


def test_eldm_recipes_list_genviews_own_choices_as_genviews():
    for name in ("gensis-imagenet", "gensis-imagenet-interp", "gensis-pathology", "gensis-pathology-interp"):
        recipe = get_recipe(name)
        own = " ".join(line for line in recipe.silent if line.startswith("genview's choice, not the paper's"))
        for choice in ("dropout 0.1", "zero embedding", "ONE cross-attention token", "EMA decay 0.9999", "ffhq-ldm-vq-4"):
            assert choice in own, (name, choice)
        assert not any(choice in line for line in recipe.cited for choice in ("0.9999", "dropout"))


def test_every_recipe_is_tested_and_documented():
    tested = {"genssl-unclip", "genssl-icgan", "daicgan-icgan", "daicgan-cc-icgan", "daicgan-fake-in", "daicgan-fake-in-cc",
              "gensis-imagenet", "gensis-imagenet-interp", "gensis-pathology", "gensis-pathology-interp"}
    assert set(RECIPES) == tested
    for recipe in RECIPES.values():
        assert recipe.paper and recipe.section and recipe.table and recipe.cited, recipe.name
        GenerateSpec(source="s", out="o", recipe=recipe.name, weights="w")  # every recipe is a valid spec


def test_explicit_values_override_the_recipe():
    spec = resolved("daicgan-icgan", k=2, params={"truncation": 0.5}, view_size=64)
    assert spec.k == 2 and spec.view_size == 64
    assert spec.params == {"truncation": 0.5, "truncation_mode": "scaled"}  # merged key by key
    assert spec.recipe == "daicgan-icgan"
    with pytest.raises(ValueError, match="is for model 'unclip'"):
        apply_recipe({"recipe": "genssl-unclip", "model": "icgan"})
    with pytest.raises(ValueError, match="unknown recipe 'nope'; known recipes: genssl-unclip"):
        GenerateSpec(source="s", out="o", recipe="nope", model="icgan")


def test_cli_recipe_runs_and_is_recorded(tmp_path, image_folder, tiny_weights, capsys):
    out = tmp_path / "store"
    assert main(["generate", str(image_folder), "--recipe", "daicgan-icgan", "--weights", tiny_weights("icgan"),
                 "--k", "1", "--shard-size", "12", "--out", str(out), "--no-progress"]) == 0
    assert "recipe daicgan-icgan: model icgan, k 1" in capsys.readouterr().out
    spec = Store(str(out)).spec
    assert spec["recipe"] == "daicgan-icgan" and spec["model"] == "icgan" and spec["k"] == 1
    assert spec["params"]["truncation"] == 0.8 and spec["params"]["truncation_mode"] == "scaled"
    # Rerunning with the same values spelled out (no recipe) resumes the same store.
    assert main(["generate", str(image_folder), "--model", "icgan", "--weights", tiny_weights("icgan"), "--k", "1",
                 "--shard-size", "12", "--param", "truncation_mode=scaled", "--truncation", "0.8",
                 "--out", str(out), "--no-progress"]) == 0
    assert "all were already done, nothing to run" in capsys.readouterr().out


def test_cli_recipes_list_and_show(capsys):
    assert main(["recipes", "list"]) == 0
    text = capsys.readouterr().out
    for name in RECIPES:
        assert name in text
    assert "Table 4 (SwAV)" in text and "seed 003" in text
    assert main(["recipes", "show", "gensis-pathology-interp", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["alphas"] == [0.2, 0.4, 0.6, 0.8] and shown["pair_across"] == "slide"
    assert main(["recipes", "show", "genssl-unclip"]) == 0
    assert "rescale_betas_zero_snr" in capsys.readouterr().out


def test_cli_needs_a_model_or_a_recipe(tmp_path, image_folder, capsys):
    assert main(["generate", str(image_folder), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "--model is required (or give --recipe NAME" in capsys.readouterr().err


def test_http_spec_takes_a_recipe_and_names_the_field_when_unknown():
    from pydantic import ValidationError

    from genview.api.schemas import JobCreate
    from genview.api.worker import spec_to_argv

    job = JobCreate(source="images", recipe="gensis-pathology-interp", weights="weights/eldm")
    assert job.model == "eldm" and job.alphas == [0.2, 0.4, 0.6, 0.8] and job.params["guidance_scale"] == 1.75
    with pytest.raises(ValidationError) as info:
        JobCreate(source="images", recipe="nope", model="icgan", weights="w")
    assert any(err["loc"] == ("recipe",) and "unknown recipe 'nope'" in err["msg"] for err in info.value.errors())
    # The worker hands the job to `genview generate` as flags: the same spec comes out of them.
    spec = job.to_spec(out="stores/x")
    argv = spec_to_argv(spec)
    assert argv[argv.index("--recipe") + 1] == "gensis-pathology-interp"


def test_models_info_counts_a_recipe(capsys):
    assert main(["models", "info", "--recipe", "gensis-pathology", "--preset", "tiny", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{"):])
    assert report["model"] == "eldm" and report["preset"] == "tiny"
    assert report["settings"]["guidance_scale"] == 1.75 and report["settings"]["steps"] == 50
    assert get_recipe("genssl-unclip").preset == "small"  # the seed ran stable-diffusion-2-1-unclip-small


def test_genssl_unclip_recipe_runs_on_a_tiny_model_and_records_its_settings(tmp_path, image_folder, tiny_weights, capsys):
    """The seed's unCLIP recipe end to end (tiny weights, 2 steps): its scheduler settings reach the store."""
    out = tmp_path / "store"
    assert main(["generate", str(image_folder), "--recipe", "genssl-unclip", "--weights", tiny_weights("unclip"),
                 "--k", "1", "--param", "num_inference_steps=2", "--param", "source_crop=32", "--view-size", "24",
                 "--shard-size", "12", "--out", str(out), "--no-progress"]) == 0
    spec = Store(str(out)).spec
    params = spec["params"]
    assert spec["recipe"] == "genssl-unclip" and spec["view_size"] == 24 and spec["k"] == 1
    assert (params["rescale_betas_zero_snr"], params["timestep_spacing"], params["eta"]) == (True, "trailing", 0.0)
    assert params["num_inference_steps"] == 2 and params["guidance_scale"] == 10.0 and params["source_crop"] == 32
    assert params["dtype"] == "float32"  # the recipe's fp16 is a CUDA setting: the CPU ran (and records) float32
    rows = Store(str(out)).manifest().to_pylist()
    assert len(rows) == 12 and {(r["width"], r["height"]) for r in rows} == {(24, 24)}
    assert spec["resize_filter"] == "bilinear" and spec["quality"] == 75


def test_malformed_input_with_a_recipe_is_a_validation_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        GenerateSpec(source="s", out="o", recipe="daicgan-icgan", weights="w", params=[1, 2])
    assert any(err["loc"] == ("params",) for err in info.value.errors())
    with pytest.raises(ValidationError, match="is for model 'icgan', not 'unclip'"):
        GenerateSpec(source="s", out="o", recipe="daicgan-icgan", model="unclip", weights="w")


def test_resize_filter_is_pils_antialiased_kernel():
    """--resize-filter bilinear is what the unCLIP script's PIL resize did; bicubic (the default) is PIL's bicubic."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from genview.pipeline.encode import encode_view, resize_views

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    batch = torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()
    out = {}
    for name, pil_filter in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
        ours = resize_views(batch, 24, name)[0].permute(1, 2, 0).numpy().astype(int)
        pil = np.asarray(Image.fromarray(pixels).resize((24, 24), pil_filter)).astype(int)
        assert np.abs(ours - pil).max() <= 1, name
        data, width, height = encode_view(pixels, "png", size=24, resize_filter=name)
        assert (width, height) == (24, 24)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pil.astype(np.uint8))
        out[name] = ours
    assert not np.array_equal(out["bilinear"], out["bicubic"])
