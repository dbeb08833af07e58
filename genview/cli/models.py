"""`genview models list / init`: the model registry and random-weight presets."""

from __future__ import annotations

import argparse
import importlib
import json

from genview.cli.generate import parse_param, typed_params



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
    q = verbs.add_parser("list", help="the models genview can run and where each comes from", formatter_class=formatter,
                         description="Every model name: genview's core, entry points (group genview.generators) of "
                         "installed packages, genview's own included. A model can also be named as package.module:Class.")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(handler=run_list)
    q = verbs.add_parser(
        "init",
        help="write a RANDOMLY initialised model in its published on-disk format",
        description="Write randomly initialised weights in the model's real checkpoint layout, for tests and "
        "offline demos. The folder is marked as random, and every store made with it records and says so.",
        formatter_class=formatter,
    )
    q.add_argument("name", metavar="NAME",
                   help="model (`genview models list`, or package.module:Class); inception, openclip: the networks of "
                   "`genview quality`")
    q.add_argument("--preset", default="tiny",
                   help="tiny: CPU-sized; full: the published architecture; small: unclip only, the "
                   "stable-diffusion-2-1-unclip-small architecture (CLIP ViT-L, 768-d), the first seed's model")
    q.add_argument("--out", required=True, help="folder to write")
    q.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    q.set_defaults(handler=run_init)
    q = verbs.add_parser(
        "info",
        help="parameters and FLOPs per generated view, by stage, at the real architecture sizes",
        description="List the model's --param settings (type, default, accepted values), then count parameters "
        "and FLOPs per generated view on meta tensors (no weights, no GPU), split by "
        "stage (encoder incl. scoring, denoiser x steps x guidance or generator, decoder), for the settings given, "
        "and the views/s an A100 / H100 would reach at 100 % and 40 % of peak.",
        formatter_class=formatter,
    )
    q.add_argument("name", nargs="?", metavar="NAME", help="model (or give --recipe)")
    q.add_argument("--recipe", metavar="NAME", help="count a paper recipe's model, preset, k and settings "
                   "(`genview recipes list`); --preset/--k/--param given explicitly override it")
    q.add_argument("--preset", help="architecture: full (published; the default), "
                   "small (unclip-small: ViT-L, 768-d), tiny")
    q.add_argument("--k", type=int, help="views per source (the encoder's per-source share; default 10)")
    q.add_argument("--param", action="append", type=parse_param, default=[], metavar="NAME=VALUE",
                   help="generator setting, e.g. num_inference_steps=50, guidance_scale=1, image_size=512")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(handler=run_info)


def run_list(args: argparse.Namespace) -> int:
    """Print every model with where it comes from (core, an entry point's distribution, register())."""
    from genview.generator.registry import model_entries

    entries = model_entries()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        where = f"{e.origin}: {e.source}" + (" (built in)" if e.builtin and e.origin != "core" else "")
        if e.error:
            print(f"{e.name:<{width}}  {where}  NOT USABLE: {e.error}")
        else:
            print(f"{e.name:<{width}}  {where}  {e.declaration.summary}")
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
    from genview.generator.registry import get_declaration

    declaration = get_declaration(name)
    if preset not in declaration.presets:
        raise ValueError(f"{name} has presets {', '.join(declaration.presets)}; got {preset!r}")
    cls = declaration.load_class()
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
    from genview.generator.params import describe_params
    from genview.generator.registry import get_declaration

    name, preset, k = args.name, args.preset, args.k
    if args.recipe:
        from genview.recipes import get_recipe

        recipe = get_recipe(args.recipe)
        if name not in (None, recipe.model):
            raise ValueError(f"recipe {recipe.name} is for model {recipe.model}, not {name}")
        name, preset, k = recipe.model, preset or recipe.preset, k or recipe.k
        params = {**recipe.params, **typed_params(name, args.param)}
        print(f"recipe {recipe.name}: {recipe.summary}")
    elif name is None:
        raise ValueError("give a model name or --recipe NAME")
    else:
        params = typed_params(name, args.param)
    declaration = get_declaration(name)
    args.name, args.preset = name, preset or ("full" if "full" in declaration.presets else "tiny")
    try:
        report = view_cost(name, args.preset, k=k or 10, **params)
    except NotImplementedError as exc:
        report, not_counted = None, str(exc)
    if args.json:
        # The cost report's keys (model, preset, settings, stages, ...) at the top level; the declaration beside them.
        out = {**(report.to_dict() if report else {"model": declaration.name}), "declaration": declaration.to_dict()}
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"{declaration.name}: {declaration.summary}")
    print(f"presets: {', '.join(declaration.presets)}; --param settings:")
    print(describe_params(declaration.params), end="")
    print()
    if report is None:
        print(f"FLOPs per view: not counted ({not_counted})")
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
