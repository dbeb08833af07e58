"""`genview bench MODEL`: views/s, device busy fraction, MFU, CPU cost per view and the bottleneck stage."""

from __future__ import annotations

import argparse
import json

from genview.cli.generate import parse_param, typed_params

EPILOG = """\
examples:
  genview bench icgan --preset full --device cuda --batch-size 64     # your GPU, the published architecture
  genview bench unclip --preset full --device cuda --param num_inference_steps=10
  genview bench icgan --preset tiny --device cpu                      # a quick check of the engine on CPU

Random weights of the preset's architecture (no download): the cost of a view is that of the real model.
MFU = views/s x FLOPs per view (genview models info) / the device's dense bf16 peak (table in
genview/pipeline/benchmark.py; --peak-tflops for others).
"""


def add_parsers(sub, formatter) -> None:
    """Add the `bench` verb."""
    p = sub.add_parser("bench", help="measure generation throughput on this machine's device",
                       description=__doc__, epilog=EPILOG, formatter_class=formatter)
    p.add_argument("model", metavar="MODEL", help="model (`genview models list`)")
    p.add_argument("--preset", choices=["tiny", "full"], default="tiny", help="architecture size (random weights)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=32, help="generator batch of (source x view) rows")
    p.add_argument("--sources", type=int, default=64, help="synthetic source images")
    p.add_argument("--k", type=int, default=4, help="views per source")
    p.add_argument("--view-size", type=int, help="resize views to this side (e.g. 224)")
    p.add_argument("--io-threads", type=int, help="read/decode/encode threads (default: usable CPUs - 1, at most 4)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: the engine's choice)")
    p.add_argument("--param", action="append", type=parse_param, default=[], metavar="NAME=VALUE",
                   help="model setting, e.g. dtype=bfloat16, compile=true, num_inference_steps=10")
    p.add_argument("--peak-tflops", type=float, help="the device's peak, when it is not in genview's table")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `genview bench`."""
    from genview.pipeline.benchmark import run_bench

    if args.sources < 1 or args.k < 1 or args.batch_size < 1:
        raise ValueError("--sources, --k and --batch-size must be at least 1")
    result = run_bench(args.model, preset=args.preset, device=args.device, batch_size=args.batch_size,
                       sources=args.sources, k=args.k, view_size=args.view_size, params=typed_params(args.model, args.param),
                       peak_tflops=args.peak_tflops, io_threads=args.io_threads, threads=args.threads)
    if args.json:
        import dataclasses

        print(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        print(result.table())
    return 0
