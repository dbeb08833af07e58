"""Cost of `genview quality`: seconds per 1,000 views on this machine (tiny presets), FLOPs per view at full size,
and how the tables step scales (blocked k-NN, per-class FID/KID) with an estimate for a 1.28 M-source store.

    python bench/bench_quality.py                      # 4 classes x 10 sources, K=5 (200 views), 1 torch thread
    python bench/bench_quality.py --per-class 25 --k 10 --threads 2
    python bench/bench_quality.py --scaling-only       # part 3 alone

Part 1 generates a store with the tiny random IC-GAN, then times `measure_quality` on it with the
random FID Inception (the real architecture: FID has no smaller variant), the store's own tiny
encoder, and the tiny random open_clip scorer, per stage. Part 2 counts FLOPs per view of the
real-size networks (FID Inception-v3 at 299 px, IC-GAN's SwAV ResNet-50, open_clip ViT-B-32 at
224 px) on a batch of one, as `genview models info` does; each network runs once per view and once
per source, shared by its K views.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


class Timed:
    """Wrap a callable and add its wall time to a bucket."""

    def __init__(self, fn, buckets: dict[str, float], name: str):
        self.fn, self.buckets, self.name = fn, buckets, name

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.buckets[self.name] = self.buckets.get(self.name, 0.0) + time.perf_counter() - start


def measure_tiny(work: Path, classes: int, per_class: int, k: int) -> dict[str, float]:
    """Generate a tiny store and time `genview quality` on it; return seconds by stage and counts."""
    from genview.cli.main import main as cli
    from genview.cli.models import init_random_model
    from genview.datastore.store import Store
    from genview.quality.run import QualitySpec, load_networks, measure_quality
    from genview.synthetic_data import make_image_folder

    make_image_folder(work / "img", classes=classes, per_class=per_class, size=64, seed=1)
    for name in ("icgan", "inception", "openclip"):
        init_random_model(name, "tiny", str(work / name), seed=0)
    out = work / "store"
    assert cli(["generate", str(work / "img"), "--model", "icgan", "--weights", str(work / "icgan"), "--out", str(out),
                "--k", str(k), "--shard-size", "20", "--device", "cpu", "--no-progress"]) == 0
    spec = QualitySpec(store=str(out), inception_weights=str(work / "inception"), scorer="openclip:tiny",
                       scorer_weights=str(work / "openclip"), k_nn=min(50, classes * per_class - 1))
    start = time.perf_counter()
    nets, identity = load_networks(spec, Store(str(out)).spec)
    load_s = time.perf_counter() - start
    buckets: dict[str, float] = {}
    nets.inception.embed = Timed(nets.inception.embed, buckets, "inception")
    nets.condition_embed = Timed(nets.condition_embed, buckets, "condition encoder")
    nets.scorer.embed = Timed(nets.scorer.embed, buckets, "scorer")
    start = time.perf_counter()
    report = measure_quality(spec, networks=(nets, identity), log=lambda _: None)
    total = time.perf_counter() - start
    views = sum(r["views"] for r in report.classes.to_pylist() if r["scope"] == "class")
    return {"views": views, "sources": classes * per_class, "total": total, "load": load_s, **buckets}


def full_size_flops(k: int) -> list[tuple[str, int, int, str]]:
    """Return (network, params, FLOPs per call, note) of the full-size quality networks."""
    from genview.generator.cost import _meta_icgan, count_flops, count_params
    from genview.generator.resnet_features import ENCODER_INPUT_SIZE
    from genview.quality.inception import INPUT_SIZE, _extractor_class, random_inception_state

    rows = []
    # FID Inception: built on the CPU (24 M parameters), counted on one 299 px image.
    base = _extractor_class()

    class _Unloaded(base):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    with tempfile.TemporaryDirectory() as tmp:
        torch.save({}, f"{tmp}/empty.pth")
        inception = _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=f"{tmp}/empty.pth")
    image = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)
    rows.append(("FID Inception-v3 (299 px)", count_params(inception), count_flops(inception, image), "pool3, 2048-d"))
    encoder = _meta_icgan("icgan", "full").encoder
    rows.append(("IC-GAN SwAV ResNet-50", count_params(encoder),
                 count_flops(encoder, torch.empty(1, 3, ENCODER_INPUT_SIZE, ENCODER_INPUT_SIZE, device="meta")),
                 f"conditioning space, {ENCODER_INPUT_SIZE} px"))
    import open_clip

    clip = open_clip.create_model("ViT-B-32", pretrained=None, device="meta")
    rows.append(("open_clip ViT-B-32 image tower", count_params(clip.visual),
                 count_flops(clip.encode_image, torch.empty(1, 3, 224, 224, device="meta")), "independent scorer, 224 px"))
    del random_inception_state  # imported to fail early if torch-fidelity is missing
    return rows


def fit_exponent(sizes: list[float], seconds: list[float]) -> float:
    """Return b of seconds ~ a * size^b (least squares in log-log)."""
    import numpy as np

    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def synthetic_features(classes: int, per_class: int, k: int, dim: int, seed: int = 0) -> tuple[dict, object]:
    """Features and manifest rows shaped as `genview quality` stores them (classes x per_class sources, K views each)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n = classes * per_class
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    labels = np.repeat(np.arange(classes), per_class)
    src = centres[labels] + rng.normal(size=(n, dim)).astype(np.float32)
    view_src = np.repeat(np.arange(n), k)
    views = src[view_src] + 0.5 * rng.normal(size=(n * k, dim)).astype(np.float32)
    feats = {
        "source_id": np.arange(n, dtype=np.int64), "label": np.asarray([f"c{c:04d}" for c in labels]),
        "view_source_id": view_src.astype(np.int64), "view": np.tile(np.arange(k, dtype=np.int32), n),
        "src_condition": src, "view_condition": views, "src_inception": np.abs(src), "view_inception": np.abs(views),
    }
    manifest = pa.table({"source_id": view_src.astype(np.int64), "view": feats["view"],
                         "similarity": np.ones(n * k, dtype=np.float32)})
    return feats, manifest


def measure_scaling(
    per_class: int, k: int, dim: int, classes_list: list[int], knn_sizes: list[int], repeats: int = 3
) -> dict:
    """Time the tables step's two kinds of work on synthetic features: per-class metrics, and the blocked k-NN."""
    import numpy as np

    from genview.quality import knn, metrics

    out: dict = {"tables": [], "knn": []}
    warm, _ = synthetic_features(2, 4, k, 16)  # imports (torchmetrics) and first calls out of the timings
    metrics.kernel_inception_distance(warm["src_inception"], warm["view_inception"], 2)
    for classes in classes_list:
        feats, _ = synthetic_features(classes, per_class, k, dim)
        labels = feats["label"]
        view_labels = labels[feats["view_source_id"]]
        first = feats["view"] == 0
        runs = []
        for _ in range(repeats):  # the fastest of a few runs: a shared machine's load only ever adds time
            start = time.perf_counter()
            for label in np.unique(labels):  # what build_tables does per class: FID, KID, diversity
                real = feats["src_inception"][labels == label]
                views = feats["view_inception"][view_labels == label]
                metrics.frechet_distance(real, feats["view_inception"][(view_labels == label) & first])
                metrics.kernel_inception_distance(real, views, 100)
                for i in range(0, len(views), k):
                    metrics.mean_pairwise_distance(views[i : i + k])
            runs.append(time.perf_counter() - start)
        out["tables"].append((classes * per_class, min(runs)))
    for n in knn_sizes:
        base = torch.randn(n, dim)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            knn.nearest(base, base, 50, exclude_self=True)
            runs.append(time.perf_counter() - start)
        seconds = min(runs)
        out["knn"].append((n, seconds, knn.knn_flops(n, n, dim) / seconds))
    return out


def print_scaling(got: dict, k: int, dim: int, gpu_tflops: float, sources: int = 1_281_167) -> None:
    """Print part 3: exponents and the 1.28 M-source extrapolation (an estimate)."""
    from genview.quality import knn

    print(f"per-class metrics (FID, KID, diversity) on synthetic {dim}-d features, K = {k}, "
          f"{torch.get_num_threads()} thread(s), fixed class size, more classes:")
    print(f"{'sources':>8} {'seconds':>8}  (fastest of 3 runs)")
    for n, seconds in got["tables"]:
        print(f"{n:>8} {seconds:>8.2f}")
    sizes = [r[0] for r in got["tables"]]
    print(f"per-class metrics: seconds ~ sources^{fit_exponent(sizes, [r[1] for r in got['tables']]):.2f} "
          "(the overall row's FID/KID is bounded: KID subsets <= 1000, FID covariances linear in n)")
    print(f"\nblocked k-NN kernel (matmul + top-k per block), sources x sources x {dim}:")
    print(f"{'sources':>8} {'seconds':>8} {'GFLOP/s':>8}")
    for n, seconds, flops in got["knn"]:
        print(f"{n:>8} {seconds:>8.2f} {flops / 1e9:>8.1f}")
    exponent = fit_exponent([r[0] for r in got["knn"]], [r[1] for r in got["knn"]])
    cpu = got["knn"][-1][2]
    print(f"k-NN seconds ~ sources^{exponent:.2f} (exact all-pairs search: quadratic by construction, as ic_gan's "
          "faiss IndexFlatL2)")
    views = sources * 10
    total = knn.knn_flops(sources, sources, dim) + knn.knn_flops(views, sources, dim)
    ratio = gpu_tflops * 1e12 / cpu
    cpu_hours = total / cpu / 3600
    print(f"\nESTIMATE for {sources:,} sources x K=10 on one GPU: neighbourhoods of sources and views = "
          f"{total / 1e15:,.1f} PFLOP; at this CPU's measured {cpu / 1e9:.1f} GFLOP/s that is {cpu_hours:,.0f} CPU-hours; "
          f"a GPU sustaining {gpu_tflops:g} TFLOP/s (assumed: A100 FP32 dense peak; GPU/CPU FLOP ratio {ratio:,.0f}) "
          f"needs ~{cpu_hours / ratio:.1f} h (an estimate, not a measurement)")


def main() -> None:
    """Run the parts and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--scaling-only", action="store_true", help="run part 3 only")
    parser.add_argument("--scaling-per-class", type=int, default=100, help="part 3: sources per class")
    parser.add_argument("--scaling-classes", default="2,4,8", help="part 3: class counts of the tables step")
    parser.add_argument("--knn-sizes", default="2000,4000,8000", help="part 3: sources of the k-NN kernel timings")
    parser.add_argument("--dim", type=int, default=2048, help="part 3: feature dimension (SwAV / Inception: 2048)")
    parser.add_argument("--gpu-tflops", type=float, default=19.5, help="assumed sustained GPU FP32 TFLOP/s")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.scaling_only:
        got = measure_scaling(args.scaling_per_class, 2, args.dim, [int(x) for x in args.scaling_classes.split(",")],
                              [int(x) for x in args.knn_sizes.split(",")])
        print_scaling(got, 2, args.dim, args.gpu_tflops)
        return
    with tempfile.TemporaryDirectory() as tmp:
        got = measure_tiny(Path(tmp), args.classes, args.per_class, args.k)
    per_k = 1000.0 / got["views"]
    print(f"tiny presets, {torch.get_num_threads()} torch thread(s): {got['sources']} sources, {got['views']} views "
          f"(K={args.k}), networks loaded in {got['load']:.1f} s")
    print(f"{'stage':<22} {'seconds':>8} {'s / 1000 views':>15}")
    for name in ("inception", "condition encoder", "scorer"):
        print(f"{name:<22} {got.get(name, 0.0):>8.2f} {got.get(name, 0.0) * per_k:>15.1f}")
    other = got["total"] - sum(got.get(n, 0.0) for n in ("inception", "condition encoder", "scorer"))
    print(f"{'read+decode+tables':<22} {other:>8.2f} {other * per_k:>15.1f}")
    print(f"{'total':<22} {got['total']:>8.2f} {got['total'] * per_k:>15.1f}")
    print()
    print(f"full size, FLOPs per generated view (each network once per view + once per source / K, K={args.k}):")
    calls = 1.0 + 1.0 / args.k
    total = 0.0
    for name, params, flops, note in full_size_flops(args.k):
        total += flops * calls
        print(f"{name:<32} {params / 1e6:>7.1f}M {flops / 1e9:>7.2f} GFLOP/call {flops * calls / 1e9:>7.2f} GFLOP/view  {note}")
    print(f"{'total':<32} {'':>8} {'':>18} {total / 1e9:>7.2f} GFLOP/view")


if __name__ == "__main__":
    main()
