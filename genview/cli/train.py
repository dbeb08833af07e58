"""`genview train eldm`: train an embedding-conditioned LDM on your own images (thin over train_eldm)."""

from __future__ import annotations

import argparse

EPILOG = """\
the Gen-SIS loop:
  genview train eldm slides/ --encoder dino:dino_deitsmall16_pretrain.pth --vqvae vq-f4/model.ckpt --out runs/eldm
  genview generate slides/ --model eldm --weights runs/eldm --k 4
  genview generate slides.csv --model eldm --weights runs/eldm --k 4 --interpolate --pair-across slide \\
      --param guidance_preset=pathology            # guidance 1.75, alphas 0.2,0.4,0.6,0.8

Interrupt at any time: rerunning the same command resumes from the newest checkpoint.
"""


def add_parsers(sub, formatter) -> None:
    """Add the `train` verb with its `eldm` model."""
    p = sub.add_parser("train", help="train a generator on your own images (E-LDM)", formatter_class=formatter,
                       description="Train a generator on your own data, for domains with no public model.")
    models = p.add_subparsers(dest="train_model", metavar="MODEL", required=True)
    q = models.add_parser(
        "eldm",
        help="embedding-conditioned latent diffusion (Gen-SIS E-LDM)",
        description="Train an E-LDM: a UNet on frozen VQ-f4 latents, conditioned by cross-attention on the embedding "
        "of a frozen SSL encoder (DINO ViT-S/16 by default), with classifier-free guidance dropout, EMA weights "
        "and resumable checkpoints (accelerate: one CPU, one GPU or many). The final folder loads with "
        "`genview generate --model eldm --weights OUT`.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    q.add_argument("data", help="image folder or list file, as `genview generate` reads")
    q.add_argument("--out", required=True, help="run folder: checkpoints/, cache/ and the final model")
    q.add_argument("--encoder", help="condition encoder: dino:PATH, resnet50:PATH, torchscript:PATH, preset:dino-vits16|dino-tiny|resnet50, or a saved encoder folder")
    q.add_argument("--vqvae", help="frozen autoencoder: a diffusers VQModel folder or a CompVis vq-f4 model.ckpt")
    q.add_argument("--init", help="start from an existing E-LDM folder (its encoder, VQ, UNet); not with --encoder/--vqvae")
    q.add_argument("--preset", choices=["full", "tiny"], default="full", help="UNet size of a fresh run")
    q.add_argument("--resolution", type=int, help="training image side (default: the autoencoder's)")
    q.add_argument("--steps", type=int, default=100_000, help="optimizer steps in all")
    q.add_argument("--batch-size", type=int, default=64, help="global batch, split over processes")
    q.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (Gen-SIS: 1e-4)")
    q.add_argument("--warmup-steps", type=int, default=1000, help="linear warm-up steps")
    q.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    q.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the gradient to this L2 norm (0: no clipping)")
    q.add_argument("--ema-decay", type=float, default=0.9999, help="decay of the EMA weights the final model is saved with")
    q.add_argument("--cfg-dropout", type=float, default=0.1, help="probability the condition is replaced by the null (zero) embedding")
    q.add_argument("--no-normalize-embedding", dest="normalize_embedding", action="store_false", help="do not L2-normalise the embedding before projecting it")
    q.add_argument("--latent-scale", help="multiplier of the VQ latents: a number, or auto = 1/std of the cached latents")
    q.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints")
    q.add_argument("--keep-checkpoints", type=int, default=2, help="newest checkpoints kept")
    q.add_argument("--seed", type=int, default=0, help="seed of initialisation, batch order, noise and condition dropout")
    q.add_argument("--no-resume", dest="resume", action="store_false", help="delete old checkpoints and start from step 0")
    q.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no", help="accelerate mixed precision (CUDA)")
    q.add_argument("--cpu", action="store_true", help="force the CPU even when a GPU is visible")
    q.add_argument("--embed-batch-size", type=int, default=32, help="batch of the one-off embedding/encoding pass")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(handler=run_eldm)


def run_eldm(args: argparse.Namespace) -> int:
    """Run `genview train eldm`."""
    from genview.generator.eldm_training import train_eldm

    latent_scale = args.latent_scale
    if latent_scale not in (None, "auto"):
        latent_scale = float(latent_scale)
    result = train_eldm(
        args.data, args.out, encoder=args.encoder, vqvae=args.vqvae, init=args.init, preset=args.preset,
        resolution=args.resolution, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
        ema_decay=args.ema_decay, cfg_dropout=args.cfg_dropout, normalize_embedding=args.normalize_embedding,
        latent_scale=latent_scale, checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
        seed=args.seed, resume=args.resume, mixed_precision=args.mixed_precision, cpu=args.cpu,
        embed_batch_size=args.embed_batch_size, progress=not args.no_progress,
    )
    losses = result.losses
    if result.resumed_from:
        print(f"resumed from {result.resumed_from}")
    if losses:
        head = sum(losses[:20]) / len(losses[:20])
        tail = sum(losses[-20:]) / len(losses[-20:])
        print(f"steps {result.start_step} -> {result.step}: loss {head:.4f} (first 20) -> {tail:.4f} (last 20)")
    else:
        print(f"already at step {result.step}; nothing to train")
    if result.skipped_sources:
        print(f"{result.skipped_sources} images could not be decoded and were left out")
    print(f"model: {result.out} (use: genview generate DATA --model eldm --weights {result.out})")
    return 0
