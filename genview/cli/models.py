"""`genview models list / init`: the model registry and random-weight presets."""

from __future__ import annotations

import argparse
import importlib
import json

from genview.cli.generate import parse_param
from genview.generator.registry import model_names


def add_parsers(sub, formatter) -> None:
    """Add the `models` verb and its sub-verbs."""
    p = sub.add_parser(
        "models",
        help="list models; write random-weight presets in the published checkpoint format",
        description="Models genview can run. Real weights are the published checkpoints in their own formats: "
        "icgan/cc-icgan: a folder with G_ema*.pth and state_dict_best*.pth (facebookresearch/ic_gan) plus the "
        "feature extractor (swav_800ep_pretrain.pth.tar for icgan, resnet50-19c8e357.pth for cc-icgan), given "
        "to `generate --weights DIR` (and --encoder-weights FILE if the extractor lives elsewhere).",
        formatter_class=formatter,
    )
    verbs = p.add_subparsers(dest="models_verb", metavar="SUBCOMMAND", required=True)
    q = verbs.add_parser("list", help="registered model names", formatter_class=formatter)
    q.set_defaults(handler=run_list)
    q = verbs.add_parser(
        "init",
        help="write a RANDOMLY initialised model in its published on-disk format",
        description="Write randomly initialised weights in the model's real checkpoint layout, for tests and "
        "offline demos. The folder is marked as random, and every store made with it records and says so.",
        formatter_class=formatter,
    )
    q.add_argument("name", choices=model_names() + sorted(MEASURING_MODELS), help="model (inception, openclip: the networks of `genview quality`)")
    q.add_argument("--preset", choices=["tiny", "full"], default="tiny", help="tiny: CPU-sized; full: the published architecture")
    q.add_argument("--out", required=True, help="folder to write")
    q.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    q.set_defaults(handler=run_init)
    q = verbs.add_parser(
        "info",
        help="parameters and FLOPs per generated view, by stage, at the real architecture sizes",
        description="Count parameters and FLOPs per generated view on meta tensors (no weights, no GPU), split by "
        "stage (encoder incl. scoring, denoiser x steps x guidance or generator, decoder), for the settings given, "
        "and the views/s an A100 / H100 would reach at 100 % and 40 % of peak.",
        formatter_class=formatter,
    )
    q.add_argument("name", choices=model_names(), help="model")
    q.add_argument("--preset", choices=["tiny", "full"], default="full", help="architecture size")
    q.add_argument("--k", type=int, default=10, help="views per source (the encoder's per-source share)")
    q.add_argument("--param", action="append", type=parse_param, default=[], metavar="NAME=VALUE",
                   help="generator setting, e.g. num_inference_steps=50, guidance_scale=1, image_size=512")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(handler=run_info)


def run_list(args: argparse.Namespace) -> int:
    """Print the registered models."""
    for name in model_names():
        print(name)
    return 0


#: Networks `genview quality` measures with (not generators): name -> "module:function(out, seed)".
MEASURING_MODELS = {
    "inception": "genview.quality.inception:init_random_inception",
    "openclip": "genview.quality.scorer:init_random_openclip",
}


def init_random_model(name: str, preset: str, out: str, seed: int = 0) -> None:
    """Write a random-weight model of `preset` to `out` and mark the folder as random."""
    if name in MEASURING_MODELS:
        if preset != "tiny":
            raise ValueError(f"{name} has only a random `tiny` preset (real weights come from the user)")
        module_name, function = MEASURING_MODELS[name].split(":")
        getattr(importlib.import_module(module_name), function)(out, seed=seed)
        return
    from genview.generator.base import write_random_marker
    from genview.generator.registry import get_generator_class

    cls = get_generator_class(name)
    model = cls.from_preset(preset, seed=seed)
    model.save_pretrained(out)
    write_random_marker(out, name, preset, seed)


def run_init(args: argparse.Namespace) -> int:
    """Run `genview models init`."""
    init_random_model(args.name, args.preset, args.out, args.seed)
    print(f"wrote RANDOMLY initialised {args.name} ({args.preset} preset, seed {args.seed}) to {args.out}")
    print("views made with these weights are not from a trained model")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Run `genview models info`."""
    from genview.generator.cost import GPU_PEAK_TFLOPS, view_cost

    report = view_cost(args.name, args.preset, k=args.k, **dict(args.param))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0
    print(f"{args.name} ({args.preset} preset) {json.dumps(report.settings, sort_keys=True, default=str)}")
    print(f"{'stage':<24} {'params':>10} {'FLOP/call':>11} {'calls/view':>11} {'FLOP/view':>11}")
    for stage in report.stages:
        print(f"{stage.name:<24} {stage.params / 1e6:>9.1f}M {stage.flops_per_call / 1e9:>10.1f}G "
              f"{stage.calls_per_view:>11.2f} {stage.flops_per_view / 1e9:>10.1f}G  {stage.note}")
    print(f"{'total':<24} {report.total_params / 1e6:>9.1f}M {'':>11} {'':>11} {report.flops_per_view / 1e9:>10.1f}G")
    for gpu, peak in GPU_PEAK_TFLOPS.items():
        print(f"{gpu}: {report.views_per_second(peak):.1f} views/s at 100 % of {peak:g} TFLOP/s, "
              f"{report.views_per_second(peak, 0.4):.1f} at 40 %")
    return 0
