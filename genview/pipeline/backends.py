"""Backends run the shard function over the unfinished shards of a job; in-process is the default."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from genview.datastore.store import Store
from genview.generator.base import ViewGenerator
from genview.pipeline.progress import JobProgress
from genview.pipeline.shard import SourceItem, ViewSettings, run_shard
from genview.pipeline.spec import GenerateSpec


@dataclasses.dataclass
class ShardPlan:
    """The shards still to make: shard number -> its sources.parquet rows."""

    store: Store
    spec: GenerateSpec
    settings: ViewSettings
    shards: dict[int, list[dict[str, Any]]]


class Backend(Protocol):
    """Runs every shard of a plan, reporting to a JobProgress."""

    def run(self, plan: ShardPlan, progress: JobProgress) -> None:
        """Make every shard in the plan; return when all are committed."""


class InProcessBackend:
    """The embedded default: one process, one model, shards one after another."""

    def __init__(self, generator: ViewGenerator):
        self.generator = generator

    def run(self, plan: ShardPlan, progress: JobProgress) -> None:
        """Make the plan's shards in order in this process."""

        def on_source(item: SourceItem) -> None:
            progress.sources_done(1, len(item.encoded), 0 if item.ok else 1, shard=item.record.get("shard"))

        with ThreadPoolExecutor(max_workers=plan.spec.io_threads, thread_name_prefix="genview-io") as pool:
            for shard, records in sorted(plan.shards.items()):
                stats = run_shard(plan.store, shard, records, self.generator, plan.settings, pool, on_source=on_source)
                progress.shard_done(stats)
