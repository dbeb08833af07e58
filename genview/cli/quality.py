"""`genview quality STORE`: measure view quality per class (DA IC-GAN's FID, NN corruption) into the store."""

from __future__ import annotations

import argparse

from genview.quality.defaults import DEFAULT_K_NN


def add_parsers(sub, formatter) -> None:
    """Add the `quality` verb."""
    p = sub.add_parser(
        "quality",
        help="measure views per class: FID/KID, NN corruption, an independent score, diversity",
        description="Measure a store's views against their sources, per class and overall, as DA IC-GAN did "
        "(seed 004 §4.1 'Per-class metrics', §5.1.4, App. B.2): FID and KID on Inception-v3 pool features, NN "
        "corruption in the conditioning encoder's space, cosine under an encoder that did not condition the "
        "generator (--scorer), and the diversity of each source's K views. Results go into STORE/quality/ "
        "(classes.parquet, views.parquet, quality.json with every network's sha256 and whether it was random). "
        "Resumable per shard: a rerun measures only new or unfinished shards. Nothing is downloaded.",
        formatter_class=formatter,
    )
    p.add_argument("store", help="store folder or URL (s3://...)")
    p.add_argument("--inception-weights", required=True, metavar="FILE",
                   help="FID Inception-v3 weights: pt_inception-2015-12-05-6726825d.pth (pytorch-fid / torch-fidelity "
                   "format) or a folder holding it; `genview models init inception --out DIR` writes a random one")
    p.add_argument("--scorer", metavar="KIND[:ARCH]", help="independent encoder: openclip:ARCH (e.g. openclip:ViT-B-32) or dino")
    p.add_argument("--scorer-weights", metavar="FILE", help="its weights: an open_clip checkpoint file (or a local-dir folder "
                   "with open_clip_config.json), or a DINO checkpoint")
    p.add_argument("--generator-weights", metavar="DIR", help="the store's generator weights if not at the recorded path "
                   "(its encoder is the conditioning space of NN corruption); must match the recorded sha256")
    p.add_argument("--encoder-weights", metavar="FILE", help="the generator's encoder file if not beside its weights")
    p.add_argument("--k-nn", type=int, default=DEFAULT_K_NN, help="neighbourhood size of NN corruption (IC-GAN's k)")
    p.add_argument("--fid-views", choices=["one", "all"], default="one",
                   help="generated set of FID: one view per source (DA IC-GAN's equal counts) or all K views")
    p.add_argument("--fid-reference", choices=["centre-crop", "whole"], default="centre-crop",
                   help="FID's reference set: each source as the generator saw it (centre crop at the views' size, as "
                   "DA IC-GAN §4.1) or the whole source at its own aspect ratio (not the paper's reference)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (subset size: min(1000, class size))")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=32, help="images per Inception batch")
    p.add_argument("--overwrite", action="store_true", help="discard earlier quality results of this store")
    p.add_argument("--ray-address", help="measure shards on this Ray cluster (auto, HOST:PORT, ray://...); the weights "
                   "paths must be readable on every node")
    p.add_argument("--workers", type=int, help="Ray actors (without --ray-address: a local Ray instance with this many)")
    p.add_argument("--scratch", metavar="DIR",
                   help="local folder for the features the tables step reads back (memory-mapped files, removed at the "
                        "end; about 4 bytes x feature size x (2 x sources + views), e.g. ~126 GB at ImageNet x K=10); "
                        "default: the system temp folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--order", default="fid", help="order of the printed per-class table (a metric, worst first)")
    p.set_defaults(handler=run_quality)


def run_quality(args: argparse.Namespace) -> int:
    """Run `genview quality`."""
    from genview.datastore.inspect import format_quality_table
    from genview.quality.run import QualitySpec, measure_quality

    spec = QualitySpec(
        store=args.store, inception_weights=args.inception_weights, scorer=args.scorer, scorer_weights=args.scorer_weights,
        generator_weights=args.generator_weights, encoder_weights=args.encoder_weights, k_nn=args.k_nn,
        fid_views=args.fid_views, fid_reference=args.fid_reference, kid_subsets=args.kid_subsets, device=args.device, batch_size=args.batch_size,
        overwrite=args.overwrite, ray_address=args.ray_address, workers=args.workers, progress=not args.no_progress,
        scratch=args.scratch,
    )
    report = measure_quality(spec)
    print(f"{args.store}: measured {report.shards_total} shards ({report.shards_run} now) in {report.seconds:.1f} s"
          + ("" if report.settings["complete"] else "; the store has unfinished shards: rerun when they are done"))
    print(format_quality_table(report.classes.to_pylist(), order=args.order))
    if report.random_networks:
        print(f"RANDOM weights in: {', '.join(report.random_networks)}: these figures test plumbing, not views")
    return 0
