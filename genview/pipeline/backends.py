"""Backends run the shard function over the unfinished shards of a job; in-process is the default."""

from __future__ import annotations

import contextlib
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Protocol

from genview.datastore.shard_rows import ShardRows
from genview.datastore.store import Store
from genview.generator.base import ViewGenerator, WeightsInfo
from genview.pipeline.progress import JobProgress
from genview.pipeline.shard import SourceItem, ViewSettings, run_shard
from genview.pipeline.spec import GenerateSpec, usable_cpus


@dataclasses.dataclass
class ShardPlan:
    """The shards still to make: shard number -> its sources.parquet rows (or a reference the worker reads)."""

    store: Store
    spec: GenerateSpec
    settings: ViewSettings
    shards: "dict[int, list[dict[str, Any]] | ShardRows]"
    #: Called with the shard number right before a shard commits; raises to keep it uncommitted (a lost lease).
    before_commit: Callable[[int], None] | None = None
    #: Backends that run many shards at once (Ray) call this right before handing a shard to a worker; False
    #: leaves the shard to another process (it holds the shard's lease), which the caller looks at again later.
    claim: Callable[[int], bool] | None = None
    #: Called by those backends once a shard is committed (its lease can go at once, not at the end of the run).
    after_commit: Callable[[int], None] | None = None


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What a store records about the model its workers run, and what planning needs (no model object)."""

    weights: WeightsInfo
    params: dict[str, Any]
    image_size: int
    needs_labels: bool
    default_alphas: list[float] | None = None
    device: str = "cpu"

    @classmethod
    def of(cls, generator: ViewGenerator) -> "ModelDescription":
        """Describe a loaded generator."""
        alphas = getattr(generator, "default_alphas", None)
        return cls(weights=generator.weights, params=dict(generator.params), image_size=int(generator.image_size),
                   needs_labels=bool(generator.needs_labels), default_alphas=list(alphas) if alphas else None,
                   device=str(generator.device))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able (and picklable across Ray) form."""
        return {**dataclasses.asdict(self), "weights": self.weights.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelDescription":
        """Inverse of `to_dict`."""
        return cls(**{**data, "weights": WeightsInfo(**data["weights"])})


class Backend(Protocol):
    """Runs every shard of a plan, reporting to a JobProgress."""

    def describe(self, spec: GenerateSpec) -> ModelDescription:
        """Return the model the workers run (weights digest, resolved params), as the store records it."""

    def run(self, plan: ShardPlan, progress: JobProgress) -> None:
        """Make every shard in the plan; return when all are committed."""

    def close(self) -> None:
        """Release workers started by `describe` or `run` (idempotent)."""


class InProcessBackend:
    """The embedded default: one process, one model, shards one after another."""

    def __init__(self, generator: ViewGenerator):
        self.generator = generator

    def describe(self, spec: GenerateSpec) -> ModelDescription:
        """Describe this process's generator."""
        return ModelDescription.of(self.generator)

    def close(self) -> None:
        """Nothing to release: the generator belongs to the caller."""

    def run(self, plan: ShardPlan, progress: JobProgress) -> None:
        """Make the plan's shards in order in this process."""

        def on_source(item: SourceItem) -> None:
            progress.sources_done(1, len(item.encoded), 0 if item.ok else 1, shard=item.record.get("shard"))

        with torch_threads(cpu_threads(plan.spec, self.generator.device.type, usable_cpus())), \
                ThreadPoolExecutor(max_workers=plan.spec.io_threads, thread_name_prefix="genview-io") as pool:
            for shard, records in sorted(plan.shards.items()):
                check = (lambda s=shard: plan.before_commit(s)) if plan.before_commit else None
                stats = run_shard(plan.store, shard, records, self.generator, plan.settings, pool, on_source=on_source,
                                  before_commit=check)
                progress.shard_done(stats)


def cpu_threads(spec: GenerateSpec, device_type: str, cpus: int) -> int:
    """torch intra-op threads for one worker: --threads, else 1 beside an accelerator, else DEFAULT_CPU_THREADS.

    With a GPU the host threads only draw noise and launch kernels, and the io threads need the
    cores. On CPU the model competes with the io threads for the same cores; see DEFAULT_CPU_THREADS.
    """
    if spec.threads:
        return spec.threads
    if device_type != "cpu":
        return 1
    return max(1, min(cpus, DEFAULT_CPU_THREADS))


#: Default torch threads for a CPU worker. Measured on this 2-core machine with the tiny IC-GAN
#: (bench/bench_pipeline.py --threads 1 / 2, README): see the README's table for the figures.
DEFAULT_CPU_THREADS = 1


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run a block with `count` torch intra-op threads, restoring the caller's setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
