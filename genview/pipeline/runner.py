"""The library API of a generation job: plan, resume, run every unfinished shard, summarise."""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
import time
from typing import Any, Callable

import pyarrow as pa

from genview.datastore.pairing import choose_secondaries
from genview.datastore.sources import assign_shards, list_sources
from genview.datastore.store import Store, StoreError, spec_differences
from genview.generator.base import ViewGenerator, WeightsNotFoundError
from genview.generator.registry import get_generator_class
from genview.pipeline.backends import Backend, InProcessBackend, ModelDescription, ShardPlan
from genview.pipeline.progress import JobProgress
from genview.pipeline.shard import ViewSettings
from genview.pipeline.spec import IDENTITY_FIELDS, GenerateSpec, resolve_device


#: Secondary sources drawn per primary for interpolation; the first that decodes is used.
SECONDARY_CANDIDATES = 4

RANDOM_WEIGHTS_WARNING = (
    "WARNING: the {model} weights at {path} are RANDOMLY INITIALISED (preset {preset}). "
    "The views are not from a trained model; use them only to test plumbing."
)


@dataclasses.dataclass
class JobSummary:
    """What a finished (or resumed) job made, totalled over every done shard."""

    out: str
    shards: int
    shards_run: int
    sources: int
    ok: int
    failed: int
    views: int
    seconds: float
    random_weights: bool
    device_busy: float | None = None  # fraction of shard time the device had work (engine stats of the done shards)
    bottleneck: str | None = None  # the stage most shards named as their limit

    def __str__(self) -> str:
        rate = self.views / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.out}: {self.ok} sources -> {self.views} views, {self.failed} failed sources "
            f"({self.shards} shards, {self.shards_run} run now, {self.seconds:.1f} s, {rate:.1f} views/s)"
        )
        if self.device_busy is not None:
            text += f"\ndevice busy {self.device_busy:.0%} of shard time; bottleneck: {self.bottleneck}"
        if self.random_weights:
            text += "\nviews are from RANDOM weights (a `models init` preset), not a trained model"
        return text


def load_generator(spec: GenerateSpec) -> ViewGenerator:
    """Load the spec's model from its weights, with a clear error when weights are not given."""
    cls = get_generator_class(spec.model)
    if not spec.weights:
        raise WeightsNotFoundError(
            f"--weights is required for --model {spec.model}: give the checkpoint directory "
            f"(see `genview models --help`), or make random test weights with "
            f"`genview models init {spec.model} --preset tiny --out DIR`"
        )
    kwargs: dict[str, Any] = dict(spec.params)
    if spec.encoder_weights:
        kwargs["encoder_weights"] = spec.encoder_weights
    return cls.from_pretrained(spec.weights, device=resolve_device(spec.device), **kwargs)


def resolved_alphas(spec: GenerateSpec, generator: ViewGenerator | ModelDescription) -> list[float] | None:
    """Interpolation ratios in force: the spec's, else the model's preset (E-LDM), else Gen-SIS's 0.5."""
    if not spec.interpolate:
        return None
    return list(spec.alphas or getattr(generator, "default_alphas", None) or [0.5])


#: Environment variable naming the Ray cluster to run on when --ray-address is not given.
RAY_ADDRESS_ENV = "GENVIEW_RAY_ADDRESS"


def ray_address(spec: GenerateSpec) -> str | None:
    """The Ray cluster a job runs on: --ray-address, else $GENVIEW_RAY_ADDRESS; None when not given."""
    return spec.ray_address or os.environ.get(RAY_ADDRESS_ENV) or None


def uses_ray(spec: GenerateSpec) -> bool:
    """True when the job runs on Ray: a cluster address, or --workers for a local Ray instance."""
    return bool(ray_address(spec) or spec.workers)


def make_backend(spec: GenerateSpec, generator: ViewGenerator | None = None) -> Backend:
    """Ray actors when an address or --workers is given, else the in-process default (loading the model if not given)."""
    if uses_ray(spec):
        from genview.pipeline.ray_backend import RayBackend  # Ray is an optional extra: imported only here

        return RayBackend(address=ray_address(spec), workers=spec.workers)
    return InProcessBackend(generator or load_generator(spec))


def store_identity(spec: GenerateSpec, generator: ViewGenerator | ModelDescription) -> dict[str, Any]:
    """Return the spec as recorded in genview.json: identity fields plus the model's resolved settings."""
    identity = {name: getattr(spec, name) for name in IDENTITY_FIELDS}
    identity["alphas"] = resolved_alphas(spec, generator)
    identity.update(
        weights=generator.weights.to_dict(),
        params=generator.params,
        image_size=generator.image_size,
    )
    return identity


def _comparable(identity: dict[str, Any]) -> dict[str, Any]:
    """Drop what may legitimately differ between runs of one job (where the weights file lives)."""
    out = dict(identity)
    weights = dict(out.get("weights") or {})
    weights.pop("id", None)
    out["weights"] = weights
    return out


def open_for_job(spec: GenerateSpec, identity: dict[str, Any], overwrite: bool = False) -> tuple[Store, Any]:
    """Create the store or reopen it for resume; refuse a store made with a different spec."""
    store = Store(spec.out)
    if overwrite:
        store.clear()
    store.prepare_dirs()
    if store.exists():
        recorded = store.spec
        diff = spec_differences(_comparable(recorded), _comparable(identity))
        if diff:
            raise StoreError(
                f"{spec.out} already holds a store made with a different spec:\n"
                + "\n".join(diff)
                + "\nrerun with the same settings to resume it, or pass --overwrite to start over"
            )
        try:
            return store, store.read_sources()
        except FileNotFoundError:
            pass  # killed between header and listing: list again below
    sources = assign_shards(list_sources(spec.source), spec.shard_size)
    if spec.interpolate:
        # Frozen with the listing, so every rerun and worker pairs the same way. Several candidates,
        # so that a primary whose first partner cannot be decoded still gets views.
        draws = [choose_secondaries(sources, spec.seed + attempt, pair_across=spec.pair_across)
                 for attempt in range(SECONDARY_CANDIDATES)]
        candidates = [list(dict.fromkeys(int(d[i]) for d in draws)) for i in range(sources.num_rows)]
        sources = sources.append_column("secondary_candidates", pa.array(candidates, pa.list_(pa.int64())))
    store.write_sources(sources)
    store.write_header(identity, extra={"random_weights": identity["weights"]["random_init"]})
    return store, sources


def generate(
    spec: GenerateSpec,
    *,
    overwrite: bool = False,
    generator: ViewGenerator | None = None,
    progress: bool = True,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
    backend: Backend | None = None,
) -> JobSummary:
    """Run a generation job: every shard without a done marker is (re)made; done ones are kept.

    The backend runs the shards (default: in this process with `generator`).
    """
    backend = backend or make_backend(spec, generator)
    try:
        return _generate(spec, backend, overwrite=overwrite, progress=progress, on_shard=on_shard)
    finally:
        backend.close()


def _generate(spec: GenerateSpec, backend: Backend, *, overwrite: bool, progress: bool,
              on_shard: Callable[[dict[str, Any]], None] | None) -> JobSummary:
    """Plan and run a job on a backend; see `generate`."""
    # The model as the workers run it (on Ray: described by a worker on its device; this process
    # never builds one), so genview.json records exactly what made the views.
    generator = backend.describe(spec)
    weights = generator.weights
    if weights.random_init:
        print(RANDOM_WEIGHTS_WARNING.format(model=spec.model, path=weights.id, preset=weights.preset), file=sys.stderr)
    identity = store_identity(spec, generator)
    store, sources = open_for_job(spec, identity, overwrite=overwrite)
    if generator.needs_labels and sources.column("label_index").null_count:
        raise StoreError(
            f"--model {spec.model} is class-conditional and needs a label for every source: use an "
            "ImageFolder tree (label = first folder) or a list file with a label column"
        )
    records = sources.to_pylist()
    if spec.interpolate:
        uri_of = {record["source_id"]: record["uri"] for record in records}
        for record in records:
            record["secondary_uris"] = [uri_of[sid] for sid in record["secondary_candidates"]]
    by_shard: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_shard.setdefault(record["shard"], []).append(record)
    done = store.done_shards()
    todo = {shard: rows for shard, rows in by_shard.items() if shard not in done}
    settings = ViewSettings(
        model=spec.model, k=spec.k, seed=spec.seed, batch_size=spec.batch_size, best_of=spec.best_of,
        format=spec.format, quality=spec.quality, view_size=spec.view_size,
        alphas=resolved_alphas(spec, generator), interpolation=spec.interpolation,
        store_embeddings=spec.store_embeddings, exact=spec.exact,
    )
    already = sum(len(rows) for shard, rows in by_shard.items() if shard in done)
    start = time.perf_counter()
    job_progress = JobProgress(len(records), already, f"genview {spec.model}", enabled=progress, on_shard=on_shard)
    try:
        backend.run(ShardPlan(store=store, spec=spec, settings=settings, shards=todo), job_progress)
    finally:
        job_progress.close()
    return summarize(store, shards_run=len(todo), seconds=time.perf_counter() - start)


def summarize(store: Store, shards_run: int = 0, seconds: float = 0.0) -> JobSummary:
    """Total the done markers of a store."""
    header = store.read_header()
    totals = {"sources": 0, "ok": 0, "failed": 0, "views": 0}
    done = store.done_shards()
    busy = shard_seconds = 0.0
    bottlenecks: collections.Counter = collections.Counter()
    for shard in done:
        stats = store.read_stats(shard)
        for name in totals:
            totals[name] += int(stats.get(name, 0))
        if "device_busy_seconds" in stats:  # done markers written by the staged engine
            busy += float(stats["device_busy_seconds"])
            shard_seconds += float(stats.get("seconds") or 0.0)
            bottlenecks[stats.get("bottleneck")] += 1
    return JobSummary(
        device_busy=round(min(1.0, busy / shard_seconds), 4) if shard_seconds > 0 else None,
        bottleneck=bottlenecks.most_common(1)[0][0] if bottlenecks else None,
        out=store.url,
        shards=len(done),
        shards_run=shards_run,
        seconds=seconds,
        random_weights=bool(header.get("random_weights")),
        **totals,
    )
