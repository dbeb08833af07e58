"""`genview bench`: run the real engine on synthetic sources and report throughput against the device's peak."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import torch

from genview.generator.registry import get_generator_class
from genview.pipeline.spec import GenerateSpec, resolve_device

#: Dense bf16/fp16 tensor-core peaks (TFLOP/s) from the vendors' datasheets, matched against
#: torch.cuda.get_device_name(); the first key found in the name wins, so longer names come first.
GPU_PEAK_TFLOPS: dict[str, float] = {
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM
    "H200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "V100": 125.0,  # fp16 tensor cores (no bf16)
    "T4": 65.0,  # fp16 tensor cores (no bf16)
}


@dataclasses.dataclass
class BenchResult:
    """What one `genview bench` run measured."""

    model: str
    preset: str
    device: str
    device_name: str
    batch_size: int
    views: int
    seconds: float
    views_per_second: float
    device_busy: float | None
    cpu_ms_per_view: float
    bottleneck: str | None
    stage_cpu_ms_per_view: dict[str, float]
    flops_per_view: float | None
    peak_tflops: float | None
    mfu: float | None

    def table(self) -> str:
        """Return the human-readable report."""
        mfu = "n/a (no peak known for this device; pass --peak-tflops)" if self.mfu is None else f"{self.mfu:.1%}"
        flops = "n/a" if self.flops_per_view is None else f"{self.flops_per_view / 1e9:.3g} GFLOP"
        busy = "n/a" if self.device_busy is None else f"{self.device_busy:.0%}"
        lines = [
            f"genview bench {self.model} (preset {self.preset}, RANDOM weights) on {self.device} ({self.device_name}), "
            f"batch {self.batch_size}",
            f"  views/s             {self.views_per_second:.1f}   ({self.views} views in {self.seconds:.2f} s)",
            f"  device busy         {busy}",
            f"  FLOPs per view      {flops}",
            f"  MFU                 {mfu}" + (f" of {self.peak_tflops:g} TFLOP/s" if self.mfu is not None else ""),
            f"  CPU core-ms/view    {self.cpu_ms_per_view:.3f}",
            f"  bottleneck stage    {self.bottleneck}",
            "  CPU ms/view by stage: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(self.stage_cpu_ms_per_view.items())),
        ]
        return "\n".join(lines)


def device_peak(device: torch.device, override: float | None = None) -> tuple[str, float | None]:
    """Return (device name, dense bf16 peak TFLOP/s or None) for a device."""
    if device.type != "cuda":
        return "cpu", override
    name = torch.cuda.get_device_name(device)
    if override is not None:
        return name, override
    for key, peak in GPU_PEAK_TFLOPS.items():
        if key in name:
            return name, peak
    return name, None


def _flops_per_view(model: str, preset: str, k: int, params: dict[str, Any]) -> float | None:
    """FLOPs per generated view from `genview.generator.cost` (None for models it does not count)."""
    from genview.generator.cost import view_cost

    try:
        return float(view_cost(model, preset, k=k, **params).flops_per_view)
    except (ValueError, TypeError):
        return None


def run_bench(model: str, preset: str = "tiny", device: str = "auto", batch_size: int = 32, sources: int = 64,
              k: int = 4, view_size: int | None = None, params: dict[str, Any] | None = None,
              peak_tflops: float | None = None, io_threads: int | None = None, threads: int | None = None,
              source_size: int = 320) -> BenchResult:
    """Generate K views of `sources` synthetic images with a random `preset` model through the real engine."""
    from genview.pipeline import generate
    from genview.synthetic_data import make_image_folder

    params = dict(params or {})
    resolved = resolve_device(device)
    generator = get_generator_class(model).from_preset(preset, seed=0, device=resolved, **params)
    with tempfile.TemporaryDirectory(prefix="genview-bench-") as tmp:
        root = Path(tmp)
        make_image_folder(root / "src", classes=4, per_class=max(1, sources // 4), size=source_size, seed=0)
        make_image_folder(root / "warm", classes=1, per_class=max(1, -(-batch_size // k)), size=source_size, seed=1)
        fields = dict(model=model, k=k, batch_size=batch_size, device=resolved, view_size=view_size,
                      threads=threads, params=params)
        if io_threads is not None:
            fields["io_threads"] = io_threads  # else the spec's default for this machine
        # A one-batch warm-up (kernels, allocator, torch.compile) that the measured run does not pay for.
        generate(GenerateSpec(source=str(root / "warm"), out=str(root / "warm-store"), **fields),
                 generator=generator, progress=False)
        shards: list[dict[str, Any]] = []
        spec = GenerateSpec(source=str(root / "src"), out=str(root / "store"), shard_size=sources, **fields)
        summary = generate(spec, generator=generator, progress=False, on_shard=shards.append)
    views = summary.views
    stage_cpu: dict[str, float] = {}
    cpu = shard_seconds = busy = 0.0
    for stats in shards:
        cpu += stats["cpu_seconds"]
        shard_seconds += stats["seconds"]
        busy += stats["device_busy_seconds"]
        for name, value in stats["stages"].items():
            stage_cpu[name] = stage_cpu.get(name, 0.0) + value["cpu_seconds"]
    rate = views / shard_seconds if shard_seconds > 0 else 0.0
    name, peak = device_peak(generator.device, peak_tflops)
    flops = _flops_per_view(model, preset, k, params)
    mfu = rate * flops / (peak * 1e12) if flops and peak else None
    return BenchResult(
        model=model, preset=preset, device=str(generator.device), device_name=name, batch_size=batch_size,
        views=views, seconds=shard_seconds, views_per_second=rate,
        device_busy=min(1.0, busy / shard_seconds) if shard_seconds > 0 else None,
        cpu_ms_per_view=cpu / views * 1e3 if views else 0.0, bottleneck=summary.bottleneck,
        stage_cpu_ms_per_view={k_: v / views * 1e3 for k_, v in stage_cpu.items() if views and v > 0},
        flops_per_view=flops, peak_tflops=peak, mfu=mfu,
    )
