"""`genview verify / inspect / preview`: read-only views of a store."""

from __future__ import annotations

import argparse
import dataclasses
import json

#: Quality metrics inspect and preview can order by (from `genview quality`).
QUALITY_ORDERS = ["fid", "kid", "nn_corruption", "view_nn_other_class", "independent", "diversity", "similarity"]


def add_parsers(sub, formatter) -> None:
    """Add the store verbs."""
    p = sub.add_parser(
        "verify",
        help="check a store: every shard readable, counts match the manifest",
        description="Check every shard of a store: tar readable, each manifest row's member present with its size, "
        "K views per ok source, planned sources all accounted for, no leftover temporary files. "
        "Exits 1 and lists the problems when anything is wrong.",
        formatter_class=formatter,
    )
    p.add_argument("store", help="store folder or URL")
    p.add_argument("--decode", action="store_true", help="also decode every view image (slower)")
    p.add_argument("--no-sha256", action="store_true",
                   help="skip comparing each tar's sha256 with its done marker (then only tar headers are read: faster, "
                   "but a flipped byte inside a member goes unseen)")
    p.add_argument("--allow-incomplete", action="store_true", help="do not count unfinished shards as problems")
    p.add_argument("--repair", action="store_true",
                   help="remove every damaged shard and leftover temporary file, then regenerate what is missing "
                   "with the spec recorded in genview.json (needs the model weights)")
    p.add_argument("--weights", help="with --repair: the model weights, when they are no longer where the store recorded them")
    p.add_argument("--encoder-weights", help="with --repair: the condition-encoder checkpoint, when not inside --weights")
    p.add_argument("--device", help="with --repair: device to regenerate on (auto, cpu, cuda, cuda:N)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (or lines) on stderr")
    p.add_argument("--json", action="store_true", help="print the report (and what --repair did) as JSON")
    p.set_defaults(handler=run_verify)

    p = sub.add_parser(
        "inspect",
        help="what is in a store: model, counts, failures, similarity per class, worst views",
        description="Summarise a store: its spec and weights (random or real), sources ok/failed, views, "
        "the similarity of views to their sources overall and per class, and the least faithful views.",
        formatter_class=formatter,
    )
    p.add_argument("store", help="store folder or URL")
    p.add_argument("--worst", type=int, default=10, help="how many lowest-similarity views and failures to list")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--order", default="fid", choices=QUALITY_ORDERS,
                   help="order of the per-class quality table (from `genview quality`), worst first")
    p.set_defaults(handler=run_inspect)

    p = sub.add_parser(
        "preview",
        help="a picture of sources beside their views",
        description="Write a PNG grid: one row per source, the original first, then its views with their similarity.",
        formatter_class=formatter,
    )
    p.add_argument("store", help="store folder or URL")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--rows", type=int, default=8, help="sources to show")
    p.add_argument("--views", type=int, help="views per source to show (default: all K)")
    p.add_argument("--cell", type=int, default=128, help="thumbnail side in pixels")
    p.add_argument("--order", choices=["first", "worst", "best", *QUALITY_ORDERS], default="first",
                   help="which sources: first by id, or by their least similar view (worst/best), or worst first by a "
                   "`genview quality` metric: fid, nn_corruption (the class's), view_nn_other_class, independent, diversity")
    p.add_argument("--label", help="only sources with this label")
    p.add_argument("--font", metavar="TTF",
                   help="TrueType font for the captions (default: Noto or DejaVu Sans when installed); characters "
                   "the font cannot draw are written as \\uXXXX instead of boxes")
    p.add_argument("--json", action="store_true", help="print what was written (path, size, random weights, quality table) as JSON")
    p.set_defaults(handler=run_preview)

    p = sub.add_parser(
        "pull",
        help="copy a (remote) store to local disk, verifying every shard",
        description="Copy a store (s3://… or any fsspec URL, or a local path) to a local folder, shard by shard: "
        "each tar is checked against its done marker's size and sha256 and its members against the manifest "
        "before the shard's marker is written. Interrupted pulls resume; finished shards are skipped.",
        formatter_class=formatter,
    )
    p.add_argument("store", help="store URL or folder to copy")
    p.add_argument("--to", required=True, dest="dest", help="local folder to copy into")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="copy without checking shards")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (or lines) on stderr")
    p.add_argument("--json", action="store_true", help="print what was copied as JSON")
    p.set_defaults(handler=run_pull)


def run_verify(args: argparse.Namespace) -> int:
    """Run `genview verify`; exit code 1 when problems are found (after --repair: when any remain)."""
    from genview.datastore.verify import verify_store

    repaired = None
    if args.repair:
        from genview.pipeline.runner import repair

        overrides = {name: value for name, value in (("encoder_weights", args.encoder_weights), ("device", args.device)) if value}
        redone, summary = repair(args.store, weights=args.weights, progress=not args.no_progress, **overrides)
        repaired = {"shards_redone": redone, "summary": dataclasses.asdict(summary)}
        if not args.json:
            print(f"repair: {len(redone)} damaged shard(s) redone" + (f": {', '.join(map(str, redone))}" if redone else ""))
            print(summary)
    with shard_progress(args.store, "verify", enabled=not args.no_progress) as bar:
        report = verify_store(args.store, decode=args.decode, require_complete=not args.allow_incomplete,
                              sha256=not args.no_sha256, on_shard=lambda _shard: bar.update(1))
    if args.json:
        print(json.dumps({"ok": report.ok, **dataclasses.asdict(report), "repair": repaired}, indent=2))
    else:
        print(report)
    return 0 if report.ok else 1


def shard_progress(url: str, desc: str, enabled: bool = True):
    """A progress bar over a store's planned shards (counted from genview.json, no listing read)."""
    from genview.console_progress import progress_bar
    from genview.datastore.store import Store, StoreError

    try:
        total = Store(url).num_shards()
    except (StoreError, OSError, ValueError):
        total = None  # not a store: the verb itself says so
    return progress_bar(total, desc, "shards", enabled=enabled)


def run_inspect(args: argparse.Namespace) -> int:
    """Run `genview inspect`."""
    from genview.datastore.inspect import format_summary, inspect_store

    summary = inspect_store(args.store, worst=args.worst, quality_order=args.order)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def run_preview(args: argparse.Namespace) -> int:
    """Run `genview preview`."""
    from genview.datastore.preview import preview_grid

    grid = preview_grid(args.store, rows=args.rows, views=args.views, cell=args.cell, order=args.order, label=args.label,
                        font=args.font)
    grid.save(args.out)
    from genview.datastore.inspect import format_quality_table, quality_summary
    from genview.datastore.store import Store

    store = Store(args.store)
    # With `genview quality` results, the per-class table the grid was ordered by goes beside it.
    quality = quality_summary(store, order=args.order if args.order in QUALITY_ORDERS else "fid")
    if args.json:
        print(json.dumps({"out": args.out, "width": grid.width, "height": grid.height,
                          "random_weights": bool(store.read_header().get("random_weights")), "quality": quality},
                         indent=2, default=str))
        return 0
    print(f"wrote {args.out} ({grid.width}x{grid.height})")
    if quality:
        print(format_quality_table(quality["classes"] + ([quality["overall"]] if quality["overall"] else [])))
    return 0


def run_pull(args: argparse.Namespace) -> int:
    """Run `genview pull`."""
    from genview.trainer_client.pull import pull_store

    from genview.console_progress import progress_bar

    bars = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(progress_bar(total, "pull", "shards", enabled=not args.no_progress))
        bars[0].update(done - bars[0].n)

    try:
        report = pull_store(args.store, args.dest, verify=args.verify, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"{args.store} -> {args.dest}: {len(report.shards_copied)} shards copied, {len(report.shards_skipped)} already there, "
          f"{report.bytes_copied / 1e6:.1f} MB, verified={report.verified}")
    return 0
