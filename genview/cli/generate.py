"""`genview generate`: build a GenerateSpec from flags and run it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import posixpath
import sys

# Only light imports at module level: `genview --help` builds every verb's parser. The pipeline
# (torch) is imported by the handler.
from genview.cli.generate_checks import flag_problems
from genview.recipes import apply_recipe, get_recipe, recipe_names  # torch-free

EPILOG = """\
examples:
  genview generate imagenet/train --recipe genssl-unclip          # the first seed's unCLIP views, its exact settings
  genview generate imagenet/train --recipe daicgan-icgan --weights ckpt/icgan_biggan_imagenet_res256
  genview generate imagenet/train --model icgan --k 10 --weights ckpt/icgan_biggan_imagenet_res256
  genview generate list.csv --model cc-icgan --weights ckpt/cc_icgan --truncation 1.0 --view-size 224
  genview models init icgan --preset tiny --out weights/  # random weights for a dry run
  genview generate s3://bucket/imagenet --out s3://bucket/views --model icgan --weights /ckpt/icgan --ray-address auto

Rerunning the same command resumes: shards with a done marker are kept, the others are redone.
Several processes may run the same command on one store (machines, a Slurm array): they share the
shards through leases. A source folder that gained images is refused unless --extend is given.
A rerun lists the source again only when it changed: a list file's sha256, a local folder's
directory mtimes; GENVIEW_RELIST_SOURCE=1 lists it at every rerun (mtimes that can't be trusted).
"""


def parse_param(text: str) -> tuple[str, str]:
    """Split NAME=VALUE; the value stays text until `typed_params` parses it by the param's declared type."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param takes NAME=VALUE, got {text!r}")
    name, raw = text.split("=", 1)
    return name.strip(), raw


def typed_params(model: str | None, pairs: list[tuple[str, str]], *, known_here: bool = True) -> dict[str, object]:
    """Parse ``--param`` texts by the model's declared types (int, float, bool, choice, ...).

    Errors name the param and what it accepts (`genview models info MODEL` lists them). With
    ``known_here=False`` (a job sent to a service that may run models not installed here) a model this
    process does not know gets its values as JSON when they parse, else as text; the service checks them.
    """
    from genview.generator.params import ParamError
    from genview.generator.registry import get_declaration

    if not pairs:
        return {}
    try:
        declaration = get_declaration(model) if model else None
    except ValueError:
        if known_here:
            raise
        declaration = None
    if declaration is None:
        if known_here:
            raise ValueError("--param needs a model (--model or --recipe) to know the params' types")
        return {name: _json_or_text(raw) for name, raw in pairs}
    try:
        return declaration.params.parse_texts(pairs, model=declaration.name)
    except ParamError as exc:
        raise ValueError(str(exc).replace("params.", "--param ", 1)) from None


def _json_or_text(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_alphas(text: str) -> list[float]:
    """Parse a comma-separated list of interpolation ratios."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--alphas takes numbers separated by commas, got {text!r}") from None


def default_out(source: str, model: str, k: int) -> str:
    """Name the store after its source, model and K, e.g. imagenet-icgan-k10."""
    base = posixpath.basename(source.rstrip("/")) or "source"
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return f"{stem}-{model}-k{k}"


def add_parsers(sub, formatter) -> None:
    """Add the `generate` verb."""
    p = sub.add_parser(
        "generate",
        help="make K views of every source image into a store",
        description="Make K views of every image in SOURCE with a conditional generator and write them "
        "as WebDataset tar shards + a Parquet manifest. Resumable: rerun to finish.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    p.add_argument("source", help="image folder (label = first sub-folder), list file (.txt/.csv/.parquet with a path column) or fsspec URL")
    p.add_argument("--recipe", choices=recipe_names(), metavar="NAME",
                   help="a paper's settings by name (`genview recipes list`); flags given explicitly override it")
    p.add_argument("--model", metavar="MODEL",
                   help="generator to use (required without --recipe): a name from `genview models list` "
                   "or package.module:Class of an installed generator")
    p.add_argument("--k", type=int, help="views per source image, as the first seed (default: 10)")
    p.add_argument("--weights", help="checkpoint directory (or hub id) of the model; see `genview models --help`")
    p.add_argument("--encoder-weights", help="condition-encoder checkpoint, when it is not inside --weights")
    p.add_argument("--out", help="store folder or URL (default: SOURCE-MODEL-kK in the current folder)")
    p.add_argument("--shard-size", type=int, help="sources per shard, the unit of work and resume (default: 1000)")
    p.add_argument("--seed", type=int, help="job seed; each view's noise derives from (seed, source, view) (default: 0)")
    p.add_argument("--batch-size", type=int, help="generator batch of (source x view) rows (default: 32)")
    p.add_argument("--device", help="auto (cuda if visible), cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--view-size", type=int, help="resize stored views to this side (e.g. 224, as the first seed did); default: native")
    p.add_argument("--resize-filter", choices=["bicubic", "bilinear"],
                   help="antialiased filter of the --view-size resize (default: bicubic; the genssl-unclip recipe: bilinear)")
    p.add_argument("--format", choices=["jpg", "webp", "png"], help="view image format (default: jpg)")
    p.add_argument("--quality", type=int, help="JPEG/WebP quality (default: 95)")
    p.add_argument("--best-of", type=int,
                   help="draw N candidates per view and keep the one most similar to the source; DA IC-GAN used the "
                   "best of 20 only to build its Fake-IN test sets, recipe daicgan-fake-in (default: 1)")
    p.add_argument("--truncation", type=float, help="IC-GAN truncation sigma (default: 0.8 for icgan, 1.0 for cc-icgan, per DA IC-GAN)")
    p.add_argument("--store-embeddings", action="store_true", default=None,
                   help="keep each source's condition embedding in its sample as KEY.emb.npy (float32, numpy format)")
    p.add_argument("--source-copy", choices=["jpg", "png", "original", "none"],
                   help="how each source is kept in its sample: jpg/png store it as the generator saw it (RGB, EXIF "
                   "applied, alpha over white) as KEY.src.jpg/.png; original keeps the file's bytes and extension; "
                   "none keeps no source (default: jpg)")
    p.add_argument("--source-size", type=int, metavar="PX",
                   help="shrink the stored source copy to this short side (jpg/png only; sources are ~80%% of a store)")
    p.add_argument("--interpolate", action="store_true", default=None,
                   help="Gen-SIS interpolated views: pair each source with a secondary (stored as KEY.sec.*) and condition "
                   "view j on alpha_j * source + (1 - alpha_j) * secondary (lerp, Gen-SIS; or slerp)")
    p.add_argument("--alphas", type=parse_alphas, metavar="A,B,…",
                   help="Gen-SIS alpha per view, cycled over the K views: the weight of the SOURCE (primary) embedding, "
                   "stored as primary_weight (default: the model preset's, else 0.5; Gen-SIS pathology: 0.2,0.4,0.6,0.8)")
    p.add_argument("--pair-across", metavar="COLUMN",
                   help="take the secondary from a different value of this sources column (e.g. a slide id from the list file, or label)")
    p.add_argument("--interpolation", choices=["slerp", "lerp"],
                   help="how embeddings are mixed; lerp as Gen-SIS (supplement 9.4) (default: lerp)")
    p.add_argument("--param", action="append", type=parse_param, default=[], metavar="NAME=VALUE",
                   help="other model setting, repeatable; `genview models info MODEL` lists each with its type and default")
    p.add_argument("--io-threads", type=int, help="threads for reading, decoding and encoding, per worker (default: usable CPUs - 1, at most 4)")
    p.add_argument("--threads", type=int, help="torch intra-op threads per worker (default: 1 per worker on CPU, see README)")
    p.add_argument("--exact", action="store_true", default=None,
                   help="run the model one row at a time: byte-identical views whatever --batch-size (slower); "
                   "by default rows are batched and a view's pixels may differ by one level between batch sizes")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="run the shards on this Ray cluster (auto, HOST:PORT, ray://HOST:10001): one actor per GPU, "
                   "shards handed out as workers free up; default $GENVIEW_RAY_ADDRESS, else in this process")
    p.add_argument("--workers", type=int, metavar="N",
                   help="Ray worker actors (default: one per GPU of the cluster); without --ray-address, "
                   "starts a local Ray instance with N worker processes on this machine")
    p.add_argument("--overwrite", action="store_true", help="delete an existing store at --out and start over")
    p.add_argument("--extend", action="store_true", default=None,
                   help="the source gained images since the store was made: make their views as new shards after the "
                   "existing ones (done shards are never rewritten; images removed from the source stay in the store). "
                   "Without it a changed source is refused with the counts added and removed")
    p.add_argument("--shards", metavar="I/N",
                   help="make only the shards whose number %% N == I, e.g. a Slurm array: "
                   "--shards $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT (array 0-(N-1)). Without it, any number of "
                   "processes running the same command share the shards through leases")
    p.add_argument("--lease-seconds", type=float, metavar="S",
                   help="a process that has not renewed its shard lease for S seconds is taken for dead and its shard "
                   "is taken over (default: 300)")
    p.add_argument("--check-hashes", action="store_true",
                   help="on a rerun, check each done shard's sha256 against its marker (reads every tar) before "
                   "trusting it; without it only size and member count are checked. Damaged shards are redone")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the job summary as JSON (notes and progress go to stderr)")
    p.add_argument("--live-progress", action="store_true",
                   help="while shards run, keep OUT/_progress.json up to date (the job service reads it)")
    p.set_defaults(handler=run)


#: Spec fields taken from flags of the same name when the flag is given.
FLAG_FIELDS = (
    "recipe", "model", "weights", "encoder_weights", "k", "seed", "shard_size", "batch_size", "device", "view_size",
    "resize_filter", "format", "quality", "best_of", "store_embeddings", "source_copy", "source_size", "interpolate", "alphas", "pair_across", "interpolation",
    "io_threads", "threads", "exact", "ray_address", "workers", "extend", "shards", "lease_seconds",
)


def _report(exc: Exception) -> None:
    """Print spec errors naming the flag, e.g. `--alphas: ...`."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        for err in exc.errors():
            flag = "-".join(str(p) for p in err["loc"]).replace("_", "-")
            message = err["msg"].removeprefix("Value error, ")
            if flag == "params":  # checked against the model's declaration; the message names the param
                print(f"genview generate: error: {message.replace('params.', '--param ', 1)}", file=sys.stderr)
            elif flag:
                print(f"genview generate: error: --{flag}: {message}", file=sys.stderr)
            else:  # a check across fields (recipe options, interpolation options)
                print(f"genview generate: error: {message}", file=sys.stderr)
    else:
        print(f"genview generate: error: {exc}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run `genview generate`: flags given explicitly, over the recipe's values, over the spec defaults."""
    # Params are checked against the model's declaration before anything heavy is imported.
    try:
        model = args.model or (get_recipe(args.recipe).model if args.recipe else None)
        params = typed_params(model, args.param) if model else {}
    except ValueError as exc:
        _report(exc)
        return 2
    if args.truncation is not None:
        params["truncation"] = args.truncation
    given = {name: getattr(args, name) for name in FLAG_FIELDS if getattr(args, name) is not None}
    given.update(source=args.source, params=params)
    try:
        given = apply_recipe(given)
    except ValueError as exc:
        _report(exc)
        return 2
    if not given.get("model"):
        print("genview generate: error: --model is required (or give --recipe NAME; see `genview recipes list`)", file=sys.stderr)
        return 2
    problems = flag_problems(given)
    if problems:  # all of them at once, before pydantic and the model stack are imported
        for problem in problems:
            print(f"genview generate: error: {problem}", file=sys.stderr)
        return 2
    given.setdefault("k", 10)
    given["out"] = args.out or default_out(args.source, given.get("recipe") or given["model"], given["k"])
    from pydantic import ValidationError

    from genview.pipeline.spec import GenerateSpec

    try:
        spec = GenerateSpec(**given)
    except ValidationError as exc:
        _report(exc)
        return 2
    from genview.pipeline import generate

    if spec.recipe:
        print(f"recipe {spec.recipe}: model {spec.model}, k {spec.k}, params {spec.params}"
              + (f", view_size {spec.view_size}" if spec.view_size else "")
              + (f", best_of {spec.best_of}" if spec.best_of > 1 else "")
              + (f", alphas {spec.alphas}, pair_across {spec.pair_across}" if spec.interpolate else ""),
              file=sys.stderr if args.json else sys.stdout)
    summary = generate(spec, overwrite=args.overwrite, progress=not args.no_progress, check_hashes=args.check_hashes,
                       live_progress=args.live_progress)
    print(json.dumps(dataclasses.asdict(summary), indent=2) if args.json else summary)
    return 0
