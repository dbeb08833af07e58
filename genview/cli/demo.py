"""`genview demo`: the whole job offline: sample images, tiny random IC-GAN, generate, verify, preview."""

from __future__ import annotations

import argparse
from pathlib import Path

from genview.cli.models import init_random_model


def add_parsers(sub, formatter) -> None:
    """Add the `demo` verb."""
    p = sub.add_parser(
        "demo",
        help="run the main job offline on generated images with a tiny RANDOM-weight IC-GAN",
        description="Make a small image set, write a tiny randomly initialised IC-GAN in the published "
        "checkpoint format, generate K views per image into a store, verify it and draw a preview. "
        "No network or real weights needed; the views come from RANDOM weights and say so.",
        formatter_class=formatter,
    )
    p.add_argument("--dir", default="genview-demo", help="working folder")
    p.add_argument("--model", choices=["icgan", "cc-icgan"], default="icgan", help="model family")
    p.add_argument("--k", type=int, default=4, help="views per image")
    p.add_argument("--images", type=int, default=24, help="number of source images")
    p.add_argument("--overwrite", action="store_true", help="start the store over")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `genview demo`."""
    from genview.datastore.inspect import format_summary, inspect_store
    from genview.datastore.preview import preview_grid
    from genview.datastore.verify import verify_store
    from genview.pipeline import GenerateSpec, generate
    from genview.synthetic_data import make_image_folder

    root = Path(args.dir)
    images = root / "images"
    if not images.exists():
        make_image_folder(images, classes=3, per_class=max(1, args.images // 3), seed=0)
        print(f"made {args.images} sample images in {images}")
    weights = root / "weights" / f"{args.model}-tiny"
    if not weights.exists():
        init_random_model(args.model, "tiny", str(weights))
        print(f"wrote a tiny RANDOM-weight {args.model} to {weights}")
    store = root / f"store-{args.model}-k{args.k}"
    spec = GenerateSpec(source=str(images), out=str(store), model=args.model, weights=str(weights), k=args.k, shard_size=8, batch_size=16)
    print(generate(spec, overwrite=args.overwrite))
    report = verify_store(str(store))
    print(f"verify: {report}")
    print(format_summary(inspect_store(str(store), worst=3)))
    grid = root / "preview.png"
    preview_grid(str(store), rows=6).save(grid)
    print(f"preview: {grid}")
    print("NOTE: these views come from RANDOMLY INITIALISED weights; point --weights at real checkpoints for real views.")
    return 0 if report.ok else 1
