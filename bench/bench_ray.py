"""Ray scale-out: the same tiny-model job in-process, on 1 Ray worker and on 2 Ray workers, in one run.

    python bench/bench_ray.py --images 192 --k 4 --shard-size 8

Each configuration makes the same store (checked byte for byte against the in-process one). Printed:
end-to-end views/s (including starting the workers and loading the model in each), and steady views/s
counted from the first committed shard on, both as ratios to the in-process path. Every worker and
the in-process path use one torch thread, so the ratio shows what worker processes add; on a real
cluster each worker is a GPU. Ray is started once (a local instance) and reused by both Ray runs.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import ray
import torch

from genview.cli.models import init_random_model
from genview.pipeline import GenerateSpec, generate
from genview.pipeline.ray_backend import LOCAL_NODE_IP, RayBackend
from genview.synthetic_data import make_image_folder


def timed_job(spec: GenerateSpec, backend=None) -> dict[str, float]:
    """Run one job; return its views, wall seconds and the steady rate after the first committed shard."""
    commits: list[tuple[float, int]] = []
    start = time.perf_counter()
    summary = generate(spec, progress=False, backend=backend,
                       on_shard=lambda stats: commits.append((time.perf_counter(), stats["views"])))
    wall = time.perf_counter() - start
    first_at, first_views = commits[0]
    later = summary.views - first_views
    steady = later / (commits[-1][0] - first_at) if len(commits) > 1 and commits[-1][0] > first_at else float("nan")
    return {"views": summary.views, "wall": wall, "rate": summary.views / wall, "steady": steady}


def main() -> None:
    """Run the three configurations and print their throughput and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)  # like each Ray worker (Ray sets OMP_NUM_THREADS=1 for a 1-CPU actor)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_image_folder(tmp / "src", classes=4, per_class=args.images // 4, size=160, seed=0)
        init_random_model("icgan", "tiny", str(tmp / "weights"))
        common = dict(source=str(tmp / "src"), model="icgan", weights=str(tmp / "weights"), k=args.k,
                      shard_size=args.shard_size, batch_size=args.batch_size, device="cpu")
        results = {"in-process": timed_job(GenerateSpec(out=str(tmp / "inproc"), **common))}
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address=LOCAL_NODE_IP,
                 logging_level=logging.WARNING, log_to_driver=False)
        try:
            for workers in (1, 2):
                out = tmp / f"ray{workers}"
                spec = GenerateSpec(out=str(out), workers=workers, **common)
                results[f"ray {workers} worker{'s' if workers > 1 else ''}"] = timed_job(spec, RayBackend(workers=workers))
                for tar in sorted((tmp / "inproc" / "shards").glob("*.tar")):
                    if (out / "shards" / tar.name).read_bytes() != tar.read_bytes():
                        raise SystemExit(f"{out}: {tar.name} differs from the in-process store")
        finally:
            ray.shutdown()
    base = results["in-process"]
    print(f"tiny icgan, {args.images} sources x K={args.k}, shards of {args.shard_size}, batch {args.batch_size}, "
          f"1 torch thread per worker; stores byte-identical across all three")
    print(f"{'':16} {'views':>6} {'wall s':>7} {'views/s':>8} {'ratio':>6} {'steady views/s':>15} {'ratio':>6}")
    for name, r in results.items():
        print(f"{name:16} {r['views']:6d} {r['wall']:7.2f} {r['rate']:8.1f} {r['rate'] / base['rate']:6.2f} "
              f"{r['steady']:15.1f} {r['steady'] / base['steady']:6.2f}")


if __name__ == "__main__":
    main()
