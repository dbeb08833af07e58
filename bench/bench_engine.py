"""Can the engine keep a fast accelerator busy? A stand-in accelerator through the real engine, on this CPU.

    python bench/bench_engine.py --rate 1000 --view-size 224 --format jpg

The stand-in takes a fixed wall time per row on its own clock (what a GPU's time looks like to the
host: no CPU work) and returns 256-px views. By default it behaves as a CUDA device does: a launch
returns at once, the batch completes rows x 1/rate after the work queued before it, and the engine
learns that from events (`genview.pipeline.timeline`), so the engine's launch-ahead path runs.
`--sync` makes its forward a blocking sleep in the device thread instead (a device the host must
wait on). Everything else is real: reading and decoding JPEG sources, the device thread, the
collector, encoding, tar + sha256 + manifest writing, done markers.
Printed, as ratios from one run (this machine is shared, so absolute numbers move):
  sustained / stand-in rate          goal >= 0.9 at 1,000 views/s
  device-thread CPU ms per view      goal <= 0.15 (the serial part: what limits one process)
  all CPU core-ms per view           goal <= 1.0 at --view-size 224 jpg: process CPU while the
                                     shards ran (every thread), over the views made; the job's
                                     fixed start-up (imports, listing, planning) is printed apart
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from genview.generator.base import ViewGenerator, WeightsInfo
from genview.pipeline import GenerateSpec, generate
from genview.pipeline.spec import default_io_threads
from genview.pipeline.timeline import DeviceTimeline, TimelineEvent
from genview.synthetic_data import make_image_folder

#: Distinct views the stand-in returns (chosen by seed): smooth natural-ish images, so JPEG sizes are realistic.
BANK = 16


class StandInAccelerator(ViewGenerator):
    """A 'GPU' spending `row_seconds` per row on its own queue (or, `synchronous`, in a GIL-free sleep); 256-px uint8 views."""

    model_name = "icgan"  # recorded in the store as the model it stands in for

    def __init__(self, row_seconds: float, side: int = 256, max_batch: int = 4096, synchronous: bool = False):
        self.row_seconds = row_seconds
        self.side = side
        self.synchronous = synchronous
        self.timeline = DeviceTimeline()  # its busy_seconds is the stand-in's forward time
        self.weights = WeightsInfo(id="stand-in", sha256=hashlib.sha256(b"stand-in").hexdigest(), random_init=True,
                                   preset="stand-in")
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
        bank = []
        for i in range(BANK):
            phase = i / BANK * 6.28
            rgb = [np.sin(6 * xx + phase) + np.cos(4 * yy), np.sin(5 * (xx + yy) + phase), np.cos(7 * xx * yy + phase)]
            bank.append(np.stack([(c + 2) / 4 * 255 for c in rgb]).clip(0, 255).astype(np.uint8))
        # Channels-last, as a CUDA model with channels_last weights returns its images. The bank is
        # tiled to a whole batch so a forward returns a slice: making the views costs the host nothing,
        # as a GPU's output costs the host nothing until it is copied.
        tiles = torch.from_numpy(np.stack(bank)).repeat(max_batch // BANK + 1, 1, 1, 1)
        self.bank = tiles.contiguous(memory_format=torch.channels_last)

    @classmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cpu", **params: Any) -> "StandInAccelerator":
        """Not loadable from disk: the stand-in is built in the bench."""
        raise NotImplementedError("the stand-in accelerator is built by bench_engine.py")

    @classmethod
    def from_preset(cls, preset: str, seed: int = 0, device: str | torch.device = "cpu", **params: Any) -> "StandInAccelerator":
        """Not a preset model: the stand-in is built by bench_engine.py."""
        raise NotImplementedError("the stand-in accelerator is built by bench_engine.py")

    def save_pretrained(self, path) -> None:
        """Nothing to save."""
        raise NotImplementedError("the stand-in accelerator has no weights")

    @property
    def params(self) -> dict[str, Any]:
        """The stand-in's per-row time."""
        return {"row_seconds": self.row_seconds}

    @property
    def image_size(self) -> int:
        """Side of the views."""
        return self.side

    @property
    def device(self) -> torch.device:
        """The host: the stand-in's 'device' work is a sleep."""
        return torch.device("cpu")

    def embed(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """A 192-d colour layout: 8x8 samples of each channel (cheap, so scoring costs the host almost nothing)."""
        if isinstance(images, torch.Tensor):
            step = images.shape[-1] // 8
            return images[:, :, ::step, ::step].float().flatten(1)
        return torch.stack([torch.from_numpy(np.asarray(img.reduce(max(1, min(img.size) // 8)).resize((8, 8)),
                                                        dtype=np.float32)).permute(2, 0, 1).flatten() for img in images])

    def device_event(self) -> TimelineEvent | None:
        """An event on the stand-in's queue (None when synchronous: the engine then times the forward itself)."""
        return None if self.synchronous else self.timeline.event()

    def generate(self, embeddings: torch.Tensor, seeds: Sequence[int], labels: torch.Tensor | None = None) -> torch.Tensor:
        """Queue row_seconds per row on the device (synchronous: and wait for it), and return the rows' views from the bank."""
        done = self.timeline.run(self.row_seconds * len(seeds))
        if self.synchronous:
            done.synchronize()  # a device the host must wait on: a GIL-free sleep in the device thread
        return self.bank[: len(seeds)]


def run(args: argparse.Namespace, root: Path) -> dict[str, float]:
    """Run one job through the real engine; return its measured figures."""
    torch.set_num_threads(args.threads)
    generator = StandInAccelerator(1.0 / args.rate, synchronous=args.sync)
    spec = GenerateSpec(source=str(root / "src"), out=str(root / f"store-{args.rate}"), model="icgan", k=args.k,
                        shard_size=args.shard_size, batch_size=args.batch_size, device="cpu", view_size=args.view_size,
                        format=args.format, quality=args.quality, io_threads=args.io_threads)
    shards: list[dict] = []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    summary = generate(spec, generator=generator, progress=False, overwrite=True, on_shard=shards.append)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0
    views = summary.views
    shard_cpu = sum(s["cpu_seconds"] for s in shards)  # process CPU (all threads) while each shard ran
    stage_cpu: dict[str, float] = {}
    stage_wall: dict[str, float] = {}
    for stats in shards:
        for name, value in stats["stages"].items():
            stage_cpu[name] = stage_cpu.get(name, 0.0) + value["cpu_seconds"]
            stage_wall[name] = stage_wall.get(name, 0.0) + value["seconds"]
    shard_seconds = sum(s["seconds"] for s in shards)
    return {
        "views": views, "wall": wall, "rate": views / wall, "shard_rate": views / shard_seconds,
        "busy": generator.timeline.busy_seconds / shard_seconds,
        "device_ms": stage_cpu.get("device", 0.0) / views * 1e3,
        "writer_ms": stage_cpu.get("write", 0.0) / views * 1e3,
        "cpu_ms": shard_cpu / views * 1e3, "fixed_cpu": cpu - shard_cpu, "job_cpu_ms": cpu / views * 1e3,
        "stage_cpu": stage_cpu, "stage_wall": stage_wall,
        "bottleneck": max((s["bottleneck"] for s in shards), key=[s["bottleneck"] for s in shards].count),
    }


def main() -> None:
    """Run the bench and print its table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, nargs="+", default=[1000.0], help="stand-in views/s (one run each)")
    parser.add_argument("--sources", type=int, default=480)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=160)
    parser.add_argument("--view-size", type=int, default=224)
    parser.add_argument("--format", default="jpg", choices=["jpg", "webp", "png"])
    parser.add_argument("--quality", type=int, default=95)
    parser.add_argument("--io-threads", type=int, default=default_io_threads(),
                        help="read/decode/encode threads (default: genview's, usable CPUs - 1 at most 4: here %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--sync", action="store_true", help="a synchronous stand-in: its forward blocks the device thread")
    parser.add_argument("--source-size", type=int, default=320, help="short side of the synthetic JPEG sources")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_image_folder(root / "src", classes=4, per_class=args.sources // 4, size=args.source_size, seed=0)
        print(f"{args.sources} JPEG sources (short side {args.source_size}) x K={args.k}, batch {args.batch_size}, "
              f"view {args.view_size or 256} {args.format} q{args.quality}, io threads {args.io_threads}, "
              f"torch threads {args.threads}, {'synchronous' if args.sync else 'asynchronous (CUDA-like)'} stand-in")
        header = ("stand-in views/s", "sustained views/s", "ratio", "busy", "device-thread CPU ms/view",
                  "writer CPU ms/view", "all CPU core-ms/view", "bottleneck")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for rate in args.rate:
            args_rate = argparse.Namespace(**{**vars(args), "rate": rate})
            r = run(args_rate, root)
            print(f"| {rate:.0f} | {r['shard_rate']:.0f} | {r['shard_rate'] / rate:.2f} | {r['busy']:.2f} | "
                  f"{r['device_ms']:.3f} | {r['writer_ms']:.3f} | {r['cpu_ms']:.3f} | {r['bottleneck']} |")
            per_stage = ", ".join(f"{k} {v / r['views'] * 1e3:.3f}" for k, v in sorted(r["stage_cpu"].items()) if v)
            walls = ", ".join(f"{k} {v / r['views'] * 1e3:.3f}" for k, v in sorted(r["stage_wall"].items()) if v)
            print(f"  CPU ms/view by stage: {per_stage}")
            print(f"  wall ms/view by stage (summed over threads): {walls}")
            print(f"  whole job incl. start-up: {r['rate']:.0f} views/s, {r['job_cpu_ms']:.3f} core-ms/view; "
                  f"fixed start-up CPU (imports, listing, planning, outside the shards) {r['fixed_cpu']:.2f} s")


if __name__ == "__main__":
    main()
