"""Declarations of the generators genview ships in its core (torch-free; the classes are imported on use).

IC-GAN, CC-IC-GAN, Stable unCLIP and E-LDM. The fifth, sd-image-variations, declares itself in its own
package and reaches the registry through genview's entry point, as an outside plugin would.
Each class points back at its declaration (``ICGANGenerator.declaration is ICGAN``) and checks its
params against it: one declaration for the CLI, the job service and `genview models info`.
"""

from __future__ import annotations

from genview.generator.declaration import GeneratorDeclaration
from genview.generator.params import Param, ParamSpec

#: Compute dtypes a CUDA run may ask for (CPU always runs float32).
_DTYPE = ("auto", "float32", "float16", "bfloat16")


def _icgan_params(default_truncation: float) -> ParamSpec:
    return ParamSpec([
        Param("truncation", "float", default_truncation, "truncation sigma of the noise (DA IC-GAN: 0.8 icgan, 1.0 cc-icgan)",
              minimum=0.0, maximum=10.0),
        Param("truncation_mode", "choice", "scaled", "scaled: sigma x N(0, I); truncated: resample |z| > sigma",
              choices=("scaled", "truncated")),
        Param("dtype", "choice", "auto", "compute dtype on CUDA (auto: bfloat16 where supported); CPU runs float32",
              choices=_DTYPE),
        Param("channels_last", "bool", True, "channels-last memory format on CUDA"),
        Param("tf32", "bool", True, "TF32 matmuls and convolutions on CUDA"),
        Param("compile", "bool", False, "torch.compile the generator (CUDA only)"),
        Param("encoder_weights", "path", None, "feature-extractor checkpoint when it is not inside --weights"),
    ])


ICGAN = GeneratorDeclaration(
    name="icgan",
    generator="genview.generator.icgan:ICGANGenerator",
    params=_icgan_params(0.8),
    summary="IC-GAN: BigGAN conditioned on a SwAV ResNet-50 instance feature (facebookresearch/ic_gan checkpoints)",
    presets=("tiny", "full"),
    nominal_side=256,
)

CC_ICGAN = GeneratorDeclaration(
    name="cc-icgan",
    generator="genview.generator.icgan:CCICGANGenerator",
    params=_icgan_params(1.0),
    summary="CC-IC-GAN: BigGAN conditioned on a supervised ResNet-50 feature and the class label",
    presets=("tiny", "full"),
    needs_labels=True,
    nominal_side=256,
)

UNCLIP = GeneratorDeclaration(
    name="unclip",
    generator="genview.generator.unclip:UnCLIPGenerator",
    params=ParamSpec([
        Param("noise_level", "int", 0, "noise added to the CLIP image embedding (0 = none)", minimum=0, maximum=999),
        Param("guidance_scale", "float", 10.0, "classifier-free guidance; > 1 runs 2 UNet rows per view",
              minimum=0.0, maximum=100.0),
        Param("num_inference_steps", "int", 20, "denoising steps", minimum=1, maximum=1000),
        Param("scheduler", "choice", "ddim", "sampler, rebuilt from the checkpoint's schedule",
              choices=("ddim", "dpm-solver++", "euler")),
        Param("eta", "float", 0.0, "DDIM eta (0: deterministic)", minimum=0.0, maximum=1.0),
        Param("rescale_betas_zero_snr", "bool", False, "zero terminal SNR betas (the first seed's script: true)"),
        Param("timestep_spacing", "choice", None, "null keeps the checkpoint's (leading for SD 2.1)",
              choices=("leading", "trailing", "linspace")),
        Param("source_crop", "int", None, "centre-crop and resize the source to this side before CLIP (the seed: 224)",
              minimum=8, maximum=4096),
        Param("image_size", "int", None, "generated side; null = the UNet's native size (768 for SD 2.1 unCLIP)",
              minimum=8, maximum=2048),
        Param("dtype", "choice", "auto", "compute dtype on CUDA (auto: bfloat16 where supported); CPU runs float32",
              choices=_DTYPE),
        Param("compile", "bool", False, "torch.compile the UNet (CUDA only)"),
    ]),
    summary="Stable unCLIP (SD 2.1 unCLIP, diffusers StableUnCLIPImg2ImgPipeline) on the source's CLIP image embedding",
    presets=("tiny", "full", "small"),
    nominal_side=768,
    side_param="image_size",
)

ELDM = GeneratorDeclaration(
    name="eldm",
    generator="genview.generator.eldm:ELDMGenerator",
    params=ParamSpec([
        Param("steps", "int", 50, "denoising steps (Gen-SIS: DDIM 50)", minimum=1, maximum=1000),
        Param("guidance_preset", "choice", "imagenet", "imagenet: guidance 6; pathology: 1.75 and alphas 0.2..0.8",
              choices=("imagenet", "pathology")),
        Param("guidance_scale", "float", None, "overrides the preset's guidance (1 = no guidance)", minimum=0.0, maximum=100.0),
        Param("scheduler", "choice", "ddim", "sampler, built from the training noise schedule",
              choices=("ddim", "dpm-solver++", "ddpm", "euler", "euler-ancestral", "unipc")),
        Param("eta", "float", 0.0, "DDIM eta (0: deterministic)", minimum=0.0, maximum=1.0),
        Param("normalize_embedding", "bool", None, "fixed at training; null takes the checkpoint's"),
        Param("precision", "choice", "auto", "auto: bf16/fp16 autocast on CUDA, fp32 on CPU", choices=("auto", "fp32")),
        Param("compile", "bool", False, "torch.compile the UNet (CUDA only)"),
    ]),
    summary="Gen-SIS E-LDM: a latent diffusion model conditioned on a DINO embedding, trained with `genview train eldm`",
    presets=("tiny", "full"),
    nominal_side=256,
)

#: The core generators, in the order `genview models list` shows them.
BUILTIN: tuple[GeneratorDeclaration, ...] = (ICGAN, CC_ICGAN, UNCLIP, ELDM)
