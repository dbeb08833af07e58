"""`genview models list / init`: the model registry and random-weight presets."""

from __future__ import annotations

import argparse

from genview.generator.base import write_random_marker
from genview.generator.registry import get_generator_class, model_names


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
    q.add_argument("name", choices=model_names(), help="model")
    q.add_argument("--preset", choices=["tiny", "full"], default="tiny", help="tiny: CPU-sized; full: the published architecture")
    q.add_argument("--out", required=True, help="folder to write")
    q.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    q.set_defaults(handler=run_init)


def run_list(args: argparse.Namespace) -> int:
    """Print the registered models."""
    for name in model_names():
        print(name)
    return 0


def init_random_model(name: str, preset: str, out: str, seed: int = 0) -> None:
    """Write a random-weight model of `preset` to `out` and mark the folder as random."""
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
