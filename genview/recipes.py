"""Recipes: named bundles (model, settings, K) that reproduce one paper's views as an ordinary spec.

A recipe fills in whatever a job spec does not say; every field the user gives explicitly wins
(model params are merged key by key, the user's on top). The resolved spec and the recipe's name
go into the store's genview.json. Torch-free: the web service validates specs with it.

Each recipe cites where its numbers are written (the seed papers in ``../shared/seeds/`` and, for
the first seed, its released generation code) and says plainly where the paper is silent.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

#: Spec fields a recipe may set (besides the model and its params).
RECIPE_SPEC_FIELDS = (
    "weights", "k", "view_size", "best_of", "interpolate", "alphas", "pair_across", "interpolation", "quality",
    "resize_filter",
)

SEED_000 = "Can Generative Models Improve Self-Supervised Representation Learning? (seed 000)"
SEED_003 = "Gen-SIS: Generative Self-augmentation Improves Self-supervised Learning (seed 003)"
SEED_004 = "Data Augmentation with Instance-Conditioned GANs, DA IC-GAN (seed 004)"
#: Where the first seed's code lives (seed 000, Sec. 1: "The code to reproduce our empirical study").
SEED_000_CODE = "https://anonymous.4open.science/r/genssl-121B"
#: What "reproduce" means for the first seed's recipes: its scripts drew the noise of a whole run from one
#: generator consumed across batches, so the same views need the same batches in the same order.
IN_DISTRIBUTION = (
    "pixels: the released script seeded one torch generator per run (--image_version) and consumed it across "
    "its batches, so a view's noise depends on its batch and position; genview seeds every view on its own "
    "(seeding.py). The views are the script's in distribution, not per pixel"
)
#: E-LDM design choices Gen-SIS does not state: genview's own, listed on every E-LDM recipe.
ELDM_OWN_CHOICES = (
    "genview's choice, not the paper's: classifier-free-guidance dropout 0.1 in training (`genview train eldm "
    "--cfg-dropout`), the null condition a zero embedding",
    "genview's choice, not the paper's: the L2-normalised SSL embedding as ONE cross-attention token (a linear "
    "projection), EMA decay 0.9999, the UNet widths of LDM's ffhq-ldm-vq-4 config",
)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One paper's view-generation settings, resolvable to a GenerateSpec."""

    name: str
    summary: str
    paper: str
    section: str
    table: str
    model: str
    k: int
    params: Mapping[str, Any]
    spec: Mapping[str, Any]
    cited: tuple[str, ...]  # "value: where it is written"
    silent: tuple[str, ...] = ()  # what the paper does not say, and what the recipe chose
    preset: str = "full"  # the architecture `genview models info --recipe` counts (unclip-small: "small")

    def values(self) -> dict[str, Any]:
        """Return the spec fields this recipe sets: model, k, params and the rest."""
        return {"model": self.model, "k": self.k, "params": dict(self.params), **dict(self.spec)}

    def describe(self) -> str:
        """Return the multi-line text `genview recipes show` prints."""
        lines = [
            f"{self.name}: {self.summary}",
            f"  paper:   {self.paper}",
            f"  section: {self.section}",
            f"  table:   {self.table}",
            f"  model:   {self.model}",
            f"  k:       {self.k}",
        ]
        for key, value in self.spec.items():
            lines.append(f"  {key + ':':<9}{value}")
        lines.append("  params:  " + ", ".join(f"{k}={v}" for k, v in self.params.items()))
        lines.append("  cited:")
        lines += [f"    - {c}" for c in self.cited]
        if self.silent:
            lines.append("  the paper does not say:")
            lines += [f"    - {s}" for s in self.silent]
        return "\n".join(lines)


GENSSL_UNCLIP = Recipe(
    name="genssl-unclip",
    summary="Stable unCLIP views with the first seed's released script's settings (in distribution, not per pixel)",
    paper=SEED_000,
    section="Sec. 4 (10 views per ImageNet image, offline), App. D 'Offline generation' (Stable unCLIP source code)",
    table="Fig. 4 / Table 9 (linear probe, ImageNet), Table 1 (other datasets), Tables 3, 11, 12 (ablations): the 'Stable Diff' rows",
    model="unclip",
    k=10,
    params={
        "scheduler": "ddim",
        "rescale_betas_zero_snr": True,
        "timestep_spacing": "trailing",
        "eta": 0.0,
        "num_inference_steps": 10,
        "guidance_scale": 10.0,
        "noise_level": 0,
        "dtype": "float16",
        "source_crop": 224,
    },
    spec={"weights": "stabilityai/stable-diffusion-2-1-unclip-small", "view_size": 224, "quality": 75,
          "resize_filter": "bilinear"},
    preset="small",
    cited=(
        f"weights stabilityai/stable-diffusion-2-1-unclip-small, torch_dtype float16: the released unCLIP script ({SEED_000_CODE})",
        "scheduler DDIMScheduler.from_config(..., rescale_betas_zero_snr=True, timestep_spacing='trailing'): same script",
        "num_inference_steps 10 (--steps default 10), eta 0.0 (--ddim_eta default 0.0): same script",
        "guidance_scale 10, noise_level 0: not passed by the script, so StableUnCLIPImg2ImgPipeline.__call__'s defaults",
        "image_size: not passed, so the pipeline's native 768 px (UNet sample_size 96 x VAE factor 8)",
        "source_crop 224: CenterCropLongEdge() then Resize(224) before the pipeline: same script",
        "view_size 224, resize_filter bilinear: the views resized to --img_size 224 with a bilinear resize: same script",
        "quality 75: the views saved as JPEG with PIL's default quality (75; no quality passed): same script",
        "k 10: Sec. 4 'we generate 10 images per each image in the ImageNet training set offline'; App. D: 10 runs of one view each",
        "one view per (image, run), each run with its own generator seed (--image_version)",
    ),
    silent=(
        IN_DISTRIBUTION,
        "noise order: genview draws a view's latents from its seed before the pipeline's image-embedding noise; "
        "diffusers' StableUnCLIPImg2ImgPipeline draws the embedding noise first (docs/reproducing.md shows how to "
        "re-create a view with diffusers from its recorded seed)",
    ),
)

GENSSL_ICGAN = Recipe(
    name="genssl-icgan",
    summary="IC-GAN views as the first seed's released script sampled them (one kept view per draw)",
    paper=SEED_000,
    section="Sec. 4, App. D 'Offline generation' (ICGAN, ~40 h per round)",
    table="Fig. 4 / Table 9, Table 1: the 'ICGAN' rows",
    model="icgan",
    k=10,
    params={"truncation": 0.7, "truncation_mode": "truncated"},
    spec={"view_size": 224, "quality": 75},
    cited=(
        f"truncation 0.7, stochastic_truncation False: the released IC-GAN config ({SEED_000_CODE}, icgan config.py)",
        "truncation_mode truncated: z = truncnorm.rvs(-2*truncation, 2*truncation) (unit scale) in its ICGANInference",
        "experiment icgan_biggan_imagenet_res256 + swav_pretrained.pth.tar: the same config (256 px IC-GAN, SwAV features)",
        "view_size 224: pil_img.thumbnail((224, 224)) (--img_save_size 224) in its IC-GAN script (PIL's bicubic)",
        "quality 75: the views saved as JPEG with PIL's default quality (75; no quality passed): same script",
        "k 10: Sec. 4 (10 images per ImageNet image); one run per view (--ith_sample as the seed)",
    ),
    silent=(
        IN_DISTRIBUTION,
        "the script drew num_samples=16 per image and saved all 16 under one file name, so only the last survived "
        "(a bug): this recipe draws each kept view once instead; 15 of 16 draws were wasted work, not a selection",
        "weights: the seed names the experiment, not a path: pass --weights DIR holding ic_gan's icgan_biggan_imagenet_res256",
        "source preprocessing: the script fed SwAV the centre crop of its 256 px ImageNet copy as is; genview uses "
        "ic_gan's own (centre crop, resize to 256, bicubic to 224), so features can differ slightly",
    ),
)

DAICGAN_ICGAN = Recipe(
    name="daicgan-icgan",
    summary="DA IC-GAN's IC-GAN augmentation: SwAV-conditioned IC-GAN, truncation sigma 0.8",
    paper=SEED_004,
    section="Sec. 3 (truncation sigma controls the variance of z), Sec. 4.1 'Models'",
    table="Fig. 3 (supervised: ResNet-50/101/152, ResNet-50W2, DeiT-B), Table 4 (SwAV), Table 1 (robustness: DA IC-GAN rows)",
    model="icgan",
    k=10,
    params={"truncation": 0.8, "truncation_mode": "scaled"},
    spec={},
    cited=(
        "truncation 0.8 for IC-GAN: Sec. 4.1 'we set truncation sigma = 0.8 and 1.0 for IC-GAN and CC-IC-GAN respectively'",
        "truncation_mode scaled: Sec. 3 sigma 'controls the variance of the latent variable z' (z = sigma * N(0, I), "
        "ic_gan's z_var in inference/generate_images.py)",
        "256 px, k=50 neighbourhoods, SwAV features: Sec. 4.1 (the default ic_gan ImageNet checkpoint)",
    ),
    silent=(
        "K: DA IC-GAN samples z anew every time a datapoint is augmented (on the fly); it stores no views. "
        "k=10 is genview's offline stand-in (the first seed's number); raise --k for more diversity",
        "best-of-N: not used for training augmentation (only for the Fake-IN test sets, footnote 4): best_of stays 1",
    ),
)

DAICGAN_CC_ICGAN = Recipe(
    name="daicgan-cc-icgan",
    summary="DA IC-GAN's CC-IC-GAN augmentation: class-conditional, truncation sigma 1.0",
    paper=SEED_004,
    section="Sec. 3, Sec. 4.1 'Models'",
    table="Fig. 3 and Table 4: the CC-IC-GAN rows; Table 1 (robustness)",
    model="cc-icgan",
    k=10,
    params={"truncation": 1.0, "truncation_mode": "scaled"},
    spec={},
    cited=(
        "truncation 1.0 for CC-IC-GAN: Sec. 4.1 (same sentence as IC-GAN's 0.8)",
        "class label + supervised ResNet-50 features: Sec. 4.1 'CC-IC-GAN conditions ... on both the instance "
        "representation obtained with a ResNet-50 trained for classification and a class label'",
        "labels: ImageNet-1k class indices; n######## folders map through the canonical order, other names need an explicit label_index",
    ),
    silent=(
        "K: on-the-fly in the paper; k=10 here, as for daicgan-icgan",
    ),
)

DAICGAN_FAKE_IN = Recipe(
    name="daicgan-fake-in",
    summary="DA IC-GAN's Fake-IN test set: one IC-GAN image per ImageNet validation image, best of 20",
    paper=SEED_004,
    section="Sec. 4.1 'Datasets', footnote 4 (best of 20 by cosine similarity)",
    table="Table 1: the Fake-IN column (Fake-IN CC: recipe daicgan-fake-in-cc)",
    model="icgan",
    k=1,
    params={"truncation": 0.8, "truncation_mode": "scaled"},
    spec={"best_of": 20},
    cited=(
        "k 1: 'Fake-IN: containing 50K generated images obtained by conditioning the IC-GAN model on the IN validation set'",
        "best_of 20: footnote 4 'for each IN image we generate a set of 20 samples, from which we chose the one most "
        "similar (cosine similarity) to the conditioning image in the feature space'",
        "truncation 0.8: Sec. 4.1 (the IC-GAN sigma)",
    ),
    silent=(
        "the feature space of the similarity: genview scores with the conditioning encoder (SwAV for IC-GAN)",
    ),
)

DAICGAN_FAKE_IN_CC = Recipe(
    name="daicgan-fake-in-cc",
    summary="DA IC-GAN's Fake-IN CC test set: one CC-IC-GAN image per ImageNet validation image, best of 20",
    paper=SEED_004,
    section="Sec. 4.1 'Datasets', footnote 4 (best of 20 by cosine similarity)",
    table="Table 1: the Fake-IN CC column",
    model="cc-icgan",
    k=1,
    params={"truncation": 1.0, "truncation_mode": "scaled"},
    spec={"best_of": 20},
    cited=(
        "k 1: Sec. 4.1 'Fake-IN CC: containing 50K images generated with the CC-IC-GAN conditioned on the IN "
        "validation set'",
        "best_of 20: footnote 4 (as Fake-IN)",
        "truncation 1.0: Sec. 4.1 (the CC-IC-GAN sigma)",
        "class label: the validation image's own ImageNet class (Sec. 4.1: CC-IC-GAN conditions on instance and class)",
    ),
    silent=(
        "the feature space of the similarity: genview scores with the conditioning encoder (the supervised ResNet-50)",
    ),
)

GENSIS_IMAGENET = Recipe(
    name="gensis-imagenet",
    summary="Gen-SIS generative self-augmentations on ImageNet-1K: E-LDM, DDIM 50 steps, guidance 6, 4 per image",
    paper=SEED_003,
    section="Supplement 9.5.1 (DDIM 50 steps, classifier-free guidance), 9.5.2 (4 views per image, guidance 6)",
    table="Tables 11, 12 (ImageNet-1K k-NN / linear probe, Gen-DINO rows; main-text tables are not in the seed)",
    model="eldm",
    k=4,
    params={"steps": 50, "scheduler": "ddim", "eta": 0.0, "guidance_preset": "imagenet", "guidance_scale": 6.0},
    spec={},
    cited=(
        "k 4: 9.5.2 'we synthesize four generative augmentations for each real image and save them to disk'",
        "guidance 6, DDIM 50 steps: 9.5.2 'we use classifier-free guidance of 6 with 50 DDIM steps'",
    ),
    silent=(
        "DDIM eta: not stated; 0 (deterministic DDIM, LDM's default)",
        "weights: Gen-SIS trains its own E-LDM (9.5.1): pass --weights from `genview train eldm`",
        *ELDM_OWN_CHOICES,
    ),
)

GENSIS_IMAGENET_INTERP = Recipe(
    name="gensis-imagenet-interp",
    summary="Gen-SIS interpolated views on ImageNet-1K: alpha 0.5, secondary random over the dataset, lerp",
    paper=SEED_003,
    section="Supplement 9.5.2 (interpolated augmentation), 9.4 (linear interpolation), Alg. 1",
    table="Tables 11, 12 (Gen-DINO rows)",
    model="eldm",
    k=1,
    params={"steps": 50, "scheduler": "ddim", "eta": 0.0, "guidance_preset": "imagenet", "guidance_scale": 6.0},
    spec={"interpolate": True, "alphas": [0.5], "interpolation": "lerp"},
    cited=(
        "alpha 0.5: 9.5.2 'Following the ablation in Tab. 7 (in main text), we use alpha=0.5 in the training of Gen-DINO'",
        "secondary: 9.5.2 'we pick a random secondary real image out of the whole dataset' (no --pair-across)",
        "k 1: 9.5.2 'We create a single interpolated augmentation for each primary image and interpolation ratio'",
        "lerp: 9.4 'just by introducing linearly-interpolated synthetic images'; alpha weights the primary (Alg. 1)",
        "guidance 6, DDIM 50: 9.5.2 'For both generative and interpolated augmentation'",
    ),
    silent=("DDIM eta: not stated; 0", *ELDM_OWN_CHOICES),
)

GENSIS_PATHOLOGY = Recipe(
    name="gensis-pathology",
    summary="Gen-SIS generative self-augmentation on histopathology (PANDA, BRIGHT): guidance 1.75, 1 per crop",
    paper=SEED_003,
    section="Supplement 9.5.2 (histopathology paragraph)",
    table="main-text PANDA / BRIGHT MIL tables (not in the seed text)",
    model="eldm",
    k=1,
    params={"steps": 50, "scheduler": "ddim", "eta": 0.0, "guidance_preset": "pathology", "guidance_scale": 1.75},
    spec={},
    cited=(
        "k 1: 9.5.2 'synthesize one generative augmentation and one interpolated augmentation for each image' "
        "(the interpolated one: recipe gensis-pathology-interp, into its own store)",
        "guidance 1.75, DDIM 50: 9.5.2 'we use a guidance weight of 1.75 with 50 DDIM steps'",
    ),
    silent=("DDIM eta: not stated; 0", *ELDM_OWN_CHOICES),
)

GENSIS_PATHOLOGY_INTERP = Recipe(
    name="gensis-pathology-interp",
    summary="Gen-SIS interpolated views on histopathology: alpha 0.2/0.4/0.6/0.8, secondary from another slide",
    paper=SEED_003,
    section="Supplement 9.5.2 (histopathology paragraph), 9.4, Alg. 1",
    table="main-text PANDA / BRIGHT MIL tables (not in the seed text)",
    model="eldm",
    k=4,
    params={"steps": 50, "scheduler": "ddim", "eta": 0.0, "guidance_preset": "pathology", "guidance_scale": 1.75},
    spec={"interpolate": True, "alphas": [0.2, 0.4, 0.6, 0.8], "interpolation": "lerp", "pair_across": "slide"},
    cited=(
        "alphas 0.2, 0.4, 0.6, 0.8: 9.5.2 'we sample a random alpha from {0.2, 0.4, 0.6, 0.8}'",
        "k 4 = one view per alpha: 9.5.2 'We create a single interpolated image for each primary image and given "
        "interpolation ratio'",
        "pair_across slide: 9.5.2 'a random secondary real image (crop) from a different whole slide image'",
        "guidance 1.75, DDIM 50: 9.5.2; lerp: 9.4",
    ),
    silent=(
        "the slide column: the paper has slides, genview needs their name: the list file must have a 'slide' "
        "column (or pass --pair-across COLUMN)",
        "k: 9.5.2 also says 'one generative augmentation and one interpolated augmentation for each image': "
        "one interpolated image per image, its alpha drawn from the four. This recipe stores one view per alpha "
        "(k 4) so training can draw the alpha; --k 1 stores one, with alpha 0.2 (alphas cycle over the views)",
        "DDIM eta: not stated; 0",
        *ELDM_OWN_CHOICES,
    ),
)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        GENSSL_UNCLIP, GENSSL_ICGAN, DAICGAN_ICGAN, DAICGAN_CC_ICGAN, DAICGAN_FAKE_IN, DAICGAN_FAKE_IN_CC,
        GENSIS_IMAGENET, GENSIS_IMAGENET_INTERP, GENSIS_PATHOLOGY, GENSIS_PATHOLOGY_INTERP,
    )
}


def recipe_names() -> list[str]:
    """Return the recipe names, in the order `genview recipes list` prints them."""
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """Return a recipe by name; an unknown name is a ValueError listing the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}") from None


def apply_recipe(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return spec input `data` with its recipe's values filled in wherever `data` does not set them.

    Fields given in `data` (not None) win; ``params`` merge key by key with `data`'s on top. A spec
    without ``recipe`` comes back unchanged. A model other than the recipe's is refused, since the
    recipe's params belong to its model.
    """
    out = dict(data)
    name = out.get("recipe")
    if not name:
        return out
    recipe = get_recipe(name)
    if out.get("model") not in (None, recipe.model):
        raise ValueError(
            f"recipe {name!r} is for model {recipe.model!r}, not {out['model']!r}: drop the model or the recipe"
        )
    for key, value in recipe.values().items():
        if key == "params":
            given = out.get("params")
            if given is None or isinstance(given, Mapping):
                out["params"] = {**value, **dict(given or {})}
            # anything else is left as given, for the spec's own validation to reject by name
        elif out.get(key) is None:
            out[key] = value
    return out
