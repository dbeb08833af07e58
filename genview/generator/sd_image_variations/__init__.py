"""Image variations with Stable Diffusion conditioned on a CLIP image embedding (sd-image-variations).

diffusers' ``StableDiffusionImageVariationPipeline`` in the ``lambdalabs/sd-image-variations-diffusers``
layout: a Stable Diffusion 1.x UNet whose cross-attention reads the source's CLIP ViT-L/14 image
embedding (one 768-d token) instead of a prompt. It reaches genview the way an outside plugin does:
this torch-free declaration is named by genview's own entry point
(``[project.entry-points."genview.generators"]`` in pyproject.toml); the class lives in `.model`.

Defaults are the pipeline's ``__call__`` defaults (50 steps, guidance 7.5) on the checkpoint's own
scheduler (PNDM for the lambdalabs release), generating at the UNet's native 512 px.
"""

from __future__ import annotations

from genview.generator.declaration import GeneratorDeclaration
from genview.generator.params import Param, ParamSpec

DECLARATION = GeneratorDeclaration(
    name="sd-image-variations",
    generator="genview.generator.sd_image_variations.model:SDImageVariationsGenerator",
    params=ParamSpec([
        Param("num_inference_steps", "int", 50, "denoising steps (the pipeline's default)", minimum=1, maximum=1000),
        Param("guidance_scale", "float", 7.5, "classifier-free guidance against a zero embedding; > 1 runs 2 UNet rows "
              "per view (the model card shows 3)", minimum=0.0, maximum=100.0),
        Param("scheduler", "choice", "pndm", "sampler, rebuilt from the checkpoint's schedule (pndm: the release's own)",
              choices=("pndm", "ddim", "dpm-solver++")),
        Param("image_size", "int", None, "generated side; null = the UNet's native size (512 for the release)",
              minimum=8, maximum=2048),
        Param("dtype", "choice", "auto", "compute dtype on CUDA (auto: bfloat16 where supported); CPU runs float32",
              choices=("auto", "float32", "float16", "bfloat16")),
        Param("compile", "bool", False, "torch.compile the UNet (CUDA only)"),
    ]),
    summary="Stable Diffusion image variations (lambdalabs/sd-image-variations-diffusers layout) on the source's "
    "CLIP image embedding",
    presets=("tiny", "full"),
    nominal_side=512,
    side_param="image_size",
)
