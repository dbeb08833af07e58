"""Memory of `genview quality`'s tables step against the features it reads, at growing store sizes.

    python bench/bench_quality_tables.py                       # 1 k, 4 k, 16 k sources x K=10, 256-d features
    python bench/bench_quality_tables.py --sources 2000 8000 --dim 512

For each size a store's quality features are synthesised in the exact per-shard format
`genview quality` writes (quality/features/NNNNNN.npz with every array, quality/done/NNNNNN.json,
and the shard's manifest fragment for the similarities; 1,000 sources a shard, 100 classes, class
structure in the features), then the tables step (`genview.quality.aggregate.build_tables`: spilled
features, neighbourhoods, per-class FID/KID) runs in a fresh process that samples its own anonymous
resident memory (RssAnon: what the process holds itself; the memory-mapped features it reads are
file pages the kernel can drop) every 20 ms. Beside it: the bytes of every feature array, which is
what concatenating the features (the step's old form) held at once. The last line fits the peak's
exponent over the sizes run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
K = 10
PER_SHARD = 1000
CLASSES = 100


def synthesise(root: Path, sources: int, dim: int, seed: int = 0) -> int:
    """Write quality features, done markers and manifest fragments of `sources` sources; return the feature bytes."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genview.datastore import layout
    from genview.quality import tables

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLASSES, dim)).astype(np.float32)
    for folder in (tables.quality_path(str(root), tables.FEATURES_DIR), tables.quality_path(str(root), tables.DONE_DIR)):
        os.makedirs(folder, exist_ok=True)
    os.makedirs(os.path.dirname(layout.shard_manifest(str(root), 0)), exist_ok=True)
    total = 0
    for shard, first in enumerate(range(0, sources, PER_SHARD)):
        ids = np.arange(first, min(first + PER_SHARD, sources), dtype=np.int64)
        labels = ids % CLASSES
        src = centres[labels] + rng.normal(size=(len(ids), dim)).astype(np.float32)
        view_src = np.repeat(ids, K)
        views = src[np.repeat(np.arange(len(ids)), K)] + 0.5 * rng.normal(size=(len(ids) * K, dim)).astype(np.float32)
        arrays = {
            "source_id": ids, "label": np.asarray([f"c{c:03d}" for c in labels]), "view_source_id": view_src,
            "view": np.tile(np.arange(K, dtype=np.int32), len(ids)), "view_shard": np.full(len(view_src), shard, np.int32),
            "src_inception": np.abs(src), "view_inception": np.abs(views), "src_condition": src, "view_condition": views,
            "src_scorer": src[:, : dim // 2].copy(), "view_scorer": views[:, : dim // 2].copy(),
        }
        total += sum(a.nbytes for name, a in arrays.items() if a.dtype == np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        Path(tables.features_path(str(root), shard)).write_bytes(buffer.getvalue())
        Path(tables.done_path(str(root), shard)).write_text(json.dumps({"shard": shard, "sources": len(ids),
                                                                        "views": len(view_src), "seconds": 0}))
        pq.write_table(pa.table({"source_id": view_src, "view": arrays["view"],
                                 "similarity": rng.uniform(0.5, 1.0, len(view_src)).astype(np.float32),
                                 "status": ["ok"] * len(view_src)}), layout.shard_manifest(str(root), shard))
    return total


def run_tables(root: str, shards: int, k_nn: int) -> dict:
    """In this (fresh) process: run the tables step, sampling RssAnon; return seconds and peaks."""
    import threading
    from types import SimpleNamespace

    import fsspec
    import torch

    from genview.quality.aggregate import build_tables
    from genview.quality.spill import SpilledRows

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    def rss_anon_mb() -> float:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    peak, stop = [rss_anon_mb()], threading.Event()
    baseline = peak[0]

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], rss_anon_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    store = SimpleNamespace(fs=fsspec.filesystem("file"), root=root)
    start = time.perf_counter()
    with SpilledRows(os.path.join(root, "scratch")) as spill:
        result = build_tables(store, list(range(shards)), spill, k_nn, progress=False)
        rows = result.classes.num_rows
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    return {"seconds": seconds, "peak_anon_mb": peak[0], "baseline_anon_mb": baseline, "classes": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--dim", type=int, default=256, help="feature dimension of every network (real: 2048 / 1024)")
    parser.add_argument("--k-nn", type=int, default=50)
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "SHARDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_tables(args.child[0], int(args.child[1]), args.k_nn)))
        return
    print(f"tables step of `genview quality`: K={K}, {CLASSES} classes, {args.dim}-d features, k-NN k={args.k_nn}, "
          f"{os.environ.get('OMP_NUM_THREADS', '1')} torch thread(s)")
    print(f"{'sources':>8} {'views':>9} {'feature bytes':>14} {'peak RssAnon':>13} {'ratio':>6} {'seconds':>8}")
    sizes, peaks = [], []
    for sources in args.sources:
        with tempfile.TemporaryDirectory(prefix="bench-quality-tables-") as tmp:
            feature_bytes = synthesise(Path(tmp), sources, args.dim)
            shards = math.ceil(sources / PER_SHARD)
            env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
            out = subprocess.run([sys.executable, __file__, "--k-nn", str(args.k_nn), "--child", tmp, str(shards)],
                                 capture_output=True, text=True, check=True, env=env)
            got = json.loads(out.stdout.strip().splitlines()[-1])
        grown = got["peak_anon_mb"] - got["baseline_anon_mb"]
        sizes.append(sources * K)
        peaks.append(max(grown, 1e-3))
        print(f"{sources:>8,} {sources * K:>9,} {feature_bytes / 2**20:>11,.0f} MB {grown:>10,.0f} MB "
              f"{feature_bytes / 2**20 / max(grown, 1e-3):>5.1f}x {got['seconds']:>8.1f}")
    if len(sizes) > 1:
        import numpy as np

        b = float(np.polyfit(np.log(sizes), np.log(peaks), 1)[0])
        slope, intercept = np.polyfit(sizes, peaks, 1)
        print(f"(peak RssAnon: growth over the process's own start, imports excluded; ratio: feature bytes / that peak; "
              f"peak ~ views^{b:.2f})")
        views = 12_811_670
        print(f"linear fit: peak = {intercept:,.0f} MB + {slope * 2**20:,.0f} bytes x views; at {views:,} views "
              f"(ImageNet x K=10) that is {(intercept + slope * views) / 1024:,.1f} GB, against "
              f"{views * 4 * 2048 * 2.2 / 2**30:,.0f} GB of 2048-d Inception and conditioning features "
              "(an extrapolation of this fit, not a run)")


if __name__ == "__main__":
    main()
