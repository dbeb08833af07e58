"""The library API of a generation job: plan, resume, run every unfinished shard, summarise."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import posixpath
import sys
import time
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genview.datastore import layout
from genview.datastore.fs import canonical_url
from genview.datastore.pairing import choose_secondaries
from genview.datastore.extend import extension_rows, listing_change, shard_pattern_facts
from genview.datastore.lease import ShardLeases
from genview.datastore.shard_rows import ShardRows
from genview.datastore.shardcheck import MANIFEST_SHA256, SPEC_DIGEST, marker_problems
from genview.datastore.source_fingerprint import source_fingerprint, source_unchanged
from genview.datastore.sources import (SourceListing, assign_shards, class_conditional_label_indices, listing_digest,
                                       scan_sources)
from genview.datastore.store import Store, StoreError, comparable_spec, spec_differences, spec_digest
from genview.datastore.verify import quick_check_shard, spec_problems, verify_store
from genview.generator.base import ViewGenerator, WeightsNotFoundError
from genview.confinement import confined_path
from genview.generator.registry import get_generator_class, path_params, weights_required
from genview.pipeline.backends import Backend, InProcessBackend, ModelDescription, ShardPlan
from genview.pipeline.claims import run_with_leases
from genview.pipeline.progress import JobProgress, LiveProgressFile
from genview.pipeline.shard import ViewSettings
from genview.pipeline.source_copy import mixed_formats_message, source_formats
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
    views_run: int = 0  # views made by this run (the others were already done)
    skipped_files: int = 0  # files in the source folder that are not images (not sources)
    device_busy: float | None = None  # fraction of shard time the device had work (engine stats of the done shards)
    bottleneck: str | None = None  # the stage most shards named as their limit

    def __str__(self) -> str:
        text = f"{self.out}: {self.ok} sources -> {self.views} views, {self.failed} failed sources ({self.shards} shards"
        if self.shards_run == 0:
            text += "; all were already done, nothing to run)"
        else:
            rate = self.views_run / self.seconds if self.seconds > 0 else 0.0
            text += f", {self.shards_run} run now: {self.views_run} views in {self.seconds:.1f} s, {rate:.1f} views/s)"
        if self.skipped_files:
            text += f"\n{self.skipped_files} file(s) in the source were skipped as not images (listed in genview.json)"
        if self.device_busy is not None:
            text += f"\ndevice busy {self.device_busy:.0%} of shard time; bottleneck: {self.bottleneck}"
        if self.random_weights:
            text += "\nviews are from RANDOM weights (a `models init` preset), not a trained model"
        return text


def load_generator(spec: GenerateSpec) -> ViewGenerator:
    """Load the spec's model from its weights, with a clear error when weights are not given."""
    cls = get_generator_class(spec.model)
    if not spec.weights:
        raise WeightsNotFoundError(weights_required(spec.model))
    kwargs: dict[str, Any] = dict(spec.params)
    if spec.encoder_weights:
        kwargs["encoder_weights"] = spec.encoder_weights
    # Under the job service's roots, every weights file is opened now, confined (symlinks followed
    # and checked), and the loader reads exactly those files (genview.confinement.confined_path).
    paths = [name for name in path_params(spec.model) if kwargs.get(name) is not None]
    with contextlib.ExitStack() as stack:
        weights = stack.enter_context(confined_path(spec.weights, "weights"))
        for name in paths:
            kwargs[name] = stack.enter_context(confined_path(str(kwargs[name]), "weights"))
        generator = cls.from_pretrained(weights, device=resolve_device(spec.device), **kwargs)
    if weights != spec.weights:
        generator.weights = dataclasses.replace(generator.weights, id=str(spec.weights))
    return generator


def resolved_alphas(spec: GenerateSpec, generator: ViewGenerator | ModelDescription) -> list[float] | None:
    """Interpolation ratios in force: the spec's, else the model's preset (E-LDM), else Gen-SIS's 0.5."""
    if not spec.interpolate:
        return None
    return list(spec.alphas or getattr(generator, "default_alphas", None) or [0.5])


#: Environment variable naming the Ray cluster to run on when --ray-address is not given.
RAY_ADDRESS_ENV = "GENVIEW_RAY_ADDRESS"


#: Environment variable: set to 1, every rerun lists the source again (for a file system whose
#: directory mtimes can't be trusted; see `genview.datastore.source_fingerprint`).
RELIST_SOURCE_ENV = "GENVIEW_RELIST_SOURCE"


def relisting_forced() -> bool:
    """True when $GENVIEW_RELIST_SOURCE asks every rerun to list the source again."""
    return os.environ.get(RELIST_SOURCE_ENV, "").strip().lower() in ("1", "true", "yes")


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
    identity["source"] = canonical_url(spec.source)
    identity["alphas"] = resolved_alphas(spec, generator)
    if spec.interpolate:
        # Format v1 weighted the secondary by alpha; recording the meaning keeps a v1 store from being
        # resumed with flipped views.
        identity["alpha_weights"] = "primary"
    # The recipe the values came from (a label: the values above are what decide the content).
    identity["recipe"] = spec.recipe
    weights = generator.weights.to_dict()
    if os.path.exists(os.path.expanduser(str(weights["id"]))):
        # A local folder is recorded absolute and normalised: `verify --repair` and reruns from
        # another folder find it (a hub id or preset name is kept as given).
        weights["id"] = canonical_url(weights["id"])
    identity.update(
        weights=weights,
        params=generator.params,
        image_size=generator.image_size,
    )
    return identity


#: Drop what may legitimately differ between runs of one job (where the weights live, the recipe's name).
_comparable = comparable_spec


#: How many skipped (non-image) file names genview.json lists; the count is always exact.
SKIPPED_LISTED = 100


def _with_secondaries(sources: pa.Table, spec: GenerateSpec) -> pa.Table:
    """Add each source's interpolation partners (candidate source ids), frozen with the listing."""
    # Frozen with the listing, so every rerun and worker pairs the same way. Several candidates,
    # so that a primary whose first partner cannot be decoded still gets views.
    draws = [choose_secondaries(sources, spec.seed + attempt, pair_across=spec.pair_across)
             for attempt in range(SECONDARY_CANDIDATES)]
    candidates = [list(dict.fromkeys(int(d[i]) for d in draws)) for i in range(sources.num_rows)]
    if "secondary_candidates" in sources.column_names:
        sources = sources.drop_columns(["secondary_candidates"])
    return sources.append_column("secondary_candidates", pa.array(candidates, pa.list_(pa.int64())))


def _plan(spec: GenerateSpec) -> tuple[pa.Table, dict[str, Any]]:
    """List the source and freeze the plan: seeded shard assignment (+ secondaries); header facts."""
    fingerprint = source_fingerprint(spec.source)  # before listing: a change made while it lists shows next time
    listing = _scan(spec)
    sources = assign_shards(listing.table, spec.shard_size, seed=spec.seed)
    if get_generator_class(spec.model).needs_labels:
        # A class-conditional model is given ImageNet-1k class indices, not folder ranks.
        sources = class_conditional_label_indices(sources, spec.model)
    if spec.interpolate:
        sources = _with_secondaries(sources, spec)
    num_shards = int(pc.max(sources.column("shard")).as_py()) + 1
    facts = {
        "listing": listing.digest,
        **fingerprint,
        "skipped_files": {"count": len(listing.skipped), "first": listing.skipped[:SKIPPED_LISTED]},
        **shard_pattern_facts(sources.num_rows, num_shards),
    }
    if spec.source_copy == "original":  # original bytes keep each file's format: one member name or several
        facts["source_formats"] = source_formats(sources.column("uri").to_pylist())
        if len(facts["source_formats"]) > 1:
            print(f"genview: WARNING: {mixed_formats_message(facts['source_formats'])}", file=sys.stderr)
    return sources, facts


def _scan(spec: GenerateSpec) -> SourceListing:
    """List the source, saying so when it takes a while (a big folder, or an object store)."""
    start = time.perf_counter()
    listing = scan_sources(spec.source)
    seconds = time.perf_counter() - start
    if seconds > 5:
        print(f"genview: listed {listing.table.num_rows} images in {spec.source} in {seconds:.0f} s", file=sys.stderr)
    return listing


def _record_fingerprint(store: Store, header: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """After a listing found the same images: record the source's fresh fingerprint, so the next rerun
    need not list it (a store made before fingerprints, a racy fingerprint, a touched directory)."""
    if any(header.get(key) != value for key, value in fingerprint.items()):
        store.update_header(fingerprint)


def _check_listing(store: Store, spec: GenerateSpec, header: dict[str, Any], extend: bool) -> None:
    """Compare the source as it lists now with the store's frozen listing; refuse a change, or extend.

    The cheapest test first: the source's fingerprint (a list file's bytes, a folder's directory
    mtimes; `genview.datastore.source_fingerprint`) against the one genview.json recorded: unchanged,
    the source is not listed at all. Then the listing's count and digest against those recorded. Only
    when they differ are the uris compared (to count what was added and removed).
    """
    if not relisting_forced() and source_unchanged(spec.source, header):
        return  # the same list file or the same directory mtimes: it lists the same images
    fingerprint = source_fingerprint(spec.source)  # before listing: a change made while it lists shows next time
    listing = _scan(spec)
    if header.get("listing") == listing.digest:
        _record_fingerprint(store, header, fingerprint)
        return
    frozen = store.read_sources_columns(["source_id", "uri", "label", "label_index", "shard"])
    change = listing_change(frozen.column("uri"), listing.table)
    if not change.changed:
        _record_fingerprint(store, header, fingerprint)
        return  # same images (an older header's digest, or a reordered list file)
    added_classes = set(change.added.column("label").to_pylist()) - set(frozen.column("label").to_pylist())
    what = change.describe() + (f"; {len(added_classes)} new class(es)" if added_classes - {None} else "")
    if not extend:
        raise StoreError(
            f"{spec.out}: the source {spec.source} changed since the store was made: {what} "
            f"({listing.table.num_rows} images now, {frozen.num_rows} in the store). Rerun with --extend to make views "
            "of the added images as new shards (done shards are kept as they are; removed images stay in the "
            "store), or pass --overwrite to start over"
        )
    extensions = list(header.get("extensions") or [])
    num_shards = int(pc.max(frozen.column("shard")).as_py()) + 1
    if change.added.num_rows:
        rows = extension_rows(frozen, change.added, shard_size=spec.shard_size, seed=spec.seed,
                              extension=len(extensions) + 1)
        if get_generator_class(spec.model).needs_labels:
            rows = class_conditional_label_indices(rows, spec.model)
        everything = store.read_sources()
        combined = pa.concat_tables([everything, rows], promote_options="permissive")
        if spec.interpolate:
            # Partners for the new rows are drawn over the whole store; the old rows keep theirs.
            paired = _with_secondaries(combined.drop_columns(["secondary_candidates"]), spec)
            old = everything.num_rows
            new_candidates = paired.column("secondary_candidates").slice(old)
            combined = pa.concat_tables([everything, rows.append_column("secondary_candidates", new_candidates)],
                                        promote_options="permissive")
        store.write_sources(combined, spec.shard_size)
        added_shards = int(pc.max(rows.column("shard")).as_py()) + 1 - num_shards
        num_sources, num_shards = combined.num_rows, num_shards + added_shards
    else:
        added_shards, num_sources = 0, frozen.num_rows
    extensions.append({"added": change.added.num_rows, "removed": change.removed, "first_shard": num_shards - added_shards,
                       "shards": added_shards})
    store.update_header({"listing": listing.digest, "extensions": extensions, **fingerprint,
                         **shard_pattern_facts(num_sources, num_shards)})
    print(f"genview: extending {spec.out}: {what}; {added_shards} new shard(s) from "
          f"{layout.shard_name(num_shards - added_shards)}"
          + (f"; the {change.removed} removed image(s) stay in the store" if change.removed else ""), file=sys.stderr)


def _record_recipe(store: Store, recorded: str | None, asked: str | None) -> None:
    """A recipe run resuming a store of the same values: the store records the recipe (or says why it does not)."""
    if not asked or asked == recorded:
        return
    if recorded is None:
        store.update_spec(recipe=asked)  # the store holds exactly the recipe's views: say so from now on
    else:
        print(f"genview: {store.url} records recipe {recorded}; {asked} has the same values and resumes it, "
              f"but the store keeps naming {recorded}", file=sys.stderr)


def open_for_job(spec: GenerateSpec, identity: dict[str, Any], overwrite: bool = False) -> Store:
    """Create the store or reopen it for resume; refuse a store made with a different spec or listing.

    A rerun lists the source again: a folder that gained or lost images is refused (with the
    counts) unless the spec says `extend`.
    """
    store = Store(spec.out)
    if overwrite:
        store.clear()
    if store.exists():
        header = store.read_header()
        if header.get("format_version", 1) < layout.FORMAT_VERSION:
            raise StoreError(
                f"{spec.out} is a format v{header.get('format_version', 1)} store; this genview writes "
                f"v{layout.FORMAT_VERSION} and cannot add shards to it. It stays readable; to regenerate, "
                "pass --overwrite or choose another --out"
            )
        diff = spec_differences(_comparable(header["spec"]), _comparable(identity))
        if diff:
            raise StoreError(
                f"{spec.out} already holds a store made with a different spec:\n"
                + "\n".join(diff)
                + "\nrerun with the same settings to resume it, or pass --overwrite to start over"
            )
        _record_recipe(store, header["spec"].get("recipe"), identity.get("recipe"))
        store.prepare_dirs()
        if store.fs.exists(store.path(layout.SOURCES_FILE)):
            _check_listing(store, spec, header, spec.extend)
            return store
        # Killed between header and listing, or the listing was deleted: list again, and check it.
        sources, _ = _plan(spec)
        recorded = header.get("listing")
        now = listing_digest(sources)
        if recorded is None or recorded != now:
            raise StoreError(
                f"{spec.out} has lost its sources.parquet and the source now lists differently "
                f"({now['count']} images now, {recorded['count'] if recorded else 'unknown'} when the store was "
                "made): its done shards no longer match the source. Restore sources.parquet, or pass --overwrite "
                "to start over"
            )
        store.write_sources(sources, spec.shard_size)
        return store
    store.prepare_dirs()
    sources, facts = _plan(spec)
    check_orphan_shards(store, identity, sources)
    store.write_sources(sources, spec.shard_size)
    store.write_header(identity, extra={"random_weights": identity["weights"]["random_init"], **facts})
    return store


def trusted_done_shards(store: Store, planned: set[int], check_hashes: bool = False) -> set[int]:
    """The done shards a rerun keeps, checked without rescanning them; damaged ones are reset.

    Each done marker's recorded tar size is compared with the tar's size: one listing of shards/
    and the markers read together (concurrent requests on an object store), no tar header read.
    `check_hashes` checks structure and sha256 of every done shard instead (reads every byte);
    `genview verify` does the full check on demand.
    """
    done = store.done_shards() & planned
    if check_hashes:
        damaged = {shard: problems[0] for shard in sorted(done)
                   if (problems := quick_check_shard(store, shard, check_hashes=True))}
    else:
        damaged = _size_mismatches(store, done)
    for shard, problem in sorted(damaged.items()):
        print(f"genview: redoing a damaged shard: {problem}", file=sys.stderr)
        store.reset_shard(shard)
    return done - set(damaged)


def _size_mismatches(store: Store, done: set[int]) -> dict[int, str]:
    """Done shards whose tar is missing or not the size their marker recorded (shard -> problem)."""
    if not done:
        return {}
    shards_dir = store.path(layout.SHARDS_DIR)
    store.fs.invalidate_cache(shards_dir)
    sizes = {posixpath.basename(info["name"]): int(info["size"]) for info in store.fs.ls(shards_dir, detail=True)}
    paths = {store.marker_path(shard): shard for shard in done}
    markers = store.fs.cat(list(paths), on_error="return")
    damaged = {}
    for path, shard in paths.items():
        name = layout.shard_name(shard)
        try:
            data = markers.get(path) if isinstance(markers, dict) else markers
            if isinstance(data, BaseException):
                raise data
            stats = json.loads(data)
        except (OSError, ValueError, TypeError) as exc:
            damaged[shard] = f"shard {name}: done marker unreadable: {exc}"
            continue
        size = sizes.get(f"{name}.tar")
        if size is None:
            damaged[shard] = f"shard {name}: tar missing"
        elif stats.get("tar_bytes") is not None and size != int(stats["tar_bytes"]):
            damaged[shard] = f"shard {name}: tar is {size} bytes, its done marker says {stats['tar_bytes']}"
        elif problems := _seal_problems(store, shard, stats):
            damaged[shard] = problems[0]
    return damaged


def _seal_problems(store: Store, shard: int, stats: dict) -> list[str]:
    """What a done marker's seals say: the spec that made the shard, the marker's own digest, and the
    manifest fragment's sha256 (one small read per shard; no tar byte is read)."""
    problems = spec_problems(store, shard, stats)
    if problems:
        return problems
    fragment = b""  # markers written before the seals record no fragment digest: nothing to compare
    if stats.get(MANIFEST_SHA256):
        try:
            fragment = store.fs.cat_file(layout.shard_manifest(store.root, shard))
        except OSError as exc:
            return [f"shard {layout.shard_name(shard)}: manifest fragment unreadable: {exc}"]
    return marker_problems(stats, fragment, layout.shard_name(shard))


def check_orphan_shards(store: Store, identity: dict[str, Any], sources: pa.Table) -> None:
    """Refuse to adopt done shards of a store that lost genview.json unless this spec made them.

    Their done markers record the digest of the spec that made them; markers written before that
    field existed cannot say, so the store is refused with what to do. When sources.parquet is still
    there, the new listing must match it too (the shards hold the sources it planned).
    """
    done = sorted(store.done_shards())
    if not done:
        return
    wanted = spec_digest(identity)
    unknown, other = [], []
    for shard in done:
        try:
            made_by = store.read_stats(shard).get(SPEC_DIGEST)
        except (OSError, ValueError):
            made_by = None
        if made_by is None:
            unknown.append(shard)
        elif made_by != wanted:
            other.append(shard)
    what = f"{store.url} has no {layout.SPEC_FILE} but holds {len(done)} done shard(s)"
    if other:
        raise StoreError(
            f"{what} made with a different spec than this run's (e.g. shard {layout.shard_name(other[0])}): "
            "rerun with the settings that made them, restore genview.json, or pass --overwrite to start over"
        )
    if unknown:
        raise StoreError(
            f"{what} whose done markers do not record the spec that made them (written by an older genview), "
            f"e.g. shard {layout.shard_name(unknown[0])}: restore genview.json from a backup, or pass "
            "--overwrite to start over"
        )
    if store.fs.exists(store.path(layout.SOURCES_FILE)) and listing_digest(store.read_sources()) != listing_digest(sources):
        raise StoreError(
            f"{what}, and the source now lists differently than its sources.parquet: restore genview.json "
            "and the source, or pass --overwrite to start over"
        )


def generate(
    spec: GenerateSpec,
    *,
    overwrite: bool = False,
    generator: ViewGenerator | None = None,
    progress: bool = True,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
    backend: Backend | None = None,
    check_hashes: bool = False,
    live_progress: bool = False,
) -> JobSummary:
    """Run a generation job: every shard without a done marker is (re)made; done ones are kept.

    A done shard is kept if its tar has the size its marker recorded (with `check_hashes`, its
    structure and sha256 are checked too): a damaged one is redone, never counted as done.
    Shards are claimed through leases (see `genview.datastore.lease`), so any number of processes
    running the same job share the shards; `spec.shards` = "I/N" restricts this run to a static
    part. The backend runs the shards (default: in this process with `generator`).
    `live_progress` keeps OUT/_progress.json current while shards run (what the job service shows).
    """
    backend = backend or make_backend(spec, generator)
    try:
        return _generate(spec, backend, overwrite=overwrite, progress=progress, on_shard=on_shard,
                         check_hashes=check_hashes, live_progress=live_progress)
    finally:
        backend.close()


def _generate(spec: GenerateSpec, backend: Backend, *, overwrite: bool, progress: bool,
              on_shard: Callable[[dict[str, Any]], None] | None, check_hashes: bool,
              live_progress: bool) -> JobSummary:
    """Plan and run a job on a backend; see `generate`."""
    # The model as the workers run it (on Ray: described by a worker on its device; this process
    # never builds one), so genview.json records exactly what made the views.
    generator = backend.describe(spec)
    weights = generator.weights
    if weights.random_init:
        print(RANDOM_WEIGHTS_WARNING.format(model=spec.model, path=weights.id, preset=weights.preset), file=sys.stderr)
    identity = store_identity(spec, generator)
    store = open_for_job(spec, identity, overwrite=overwrite)
    # Only two columns: the driver never holds a row per source (workers read their shard's rows).
    plan = store.read_sources_columns(["shard", "label_index"])
    if generator.needs_labels and plan.column("label_index").null_count:
        raise StoreError(
            f"--model {spec.model} is class-conditional and needs a label for every source: use an "
            "ImageFolder tree (label = first folder) or a list file with a label column"
        )
    counts = np.bincount(plan.column("shard").to_numpy(), minlength=1)
    del plan
    index, parts = spec.shard_split()
    planned = {shard for shard in range(len(counts)) if counts[shard] and shard % parts == index}
    done = trusted_done_shards(store, planned, check_hashes=check_hashes)
    todo = {shard: ShardRows(store.url, shard, int(counts[shard])) for shard in sorted(planned - done)}
    settings = ViewSettings(
        model=spec.model, k=spec.k, seed=spec.seed, batch_size=spec.batch_size, best_of=spec.best_of,
        format=spec.format, quality=spec.quality, view_size=spec.view_size, resize_filter=spec.resize_filter,
        alphas=resolved_alphas(spec, generator), interpolation=spec.interpolation,
        store_embeddings=spec.store_embeddings, source_copy=spec.source_copy, source_size=spec.source_size,
        exact=spec.exact,
    )
    total = int(sum(int(counts[shard]) for shard in planned))
    already = int(sum(int(counts[shard]) for shard in done))
    start = time.perf_counter()
    live = LiveProgressFile(store) if live_progress else None
    job_progress = JobProgress(total, already, f"genview {spec.model}", enabled=progress, on_shard=on_shard,
                               live=live)
    leases = ShardLeases(store, expiry=spec.lease_seconds)
    try:
        made = run_with_leases(backend, ShardPlan(store=store, spec=spec, settings=settings, shards=todo),
                               job_progress, leases)
    finally:
        leases.release_all()
        job_progress.close()
    return summarize(store, shards_run=made, seconds=time.perf_counter() - start)


def summarize(store: Store, shards_run: set[int] | None = None, seconds: float = 0.0) -> JobSummary:
    """Total the done markers of a store (and the views of the shards this run made)."""
    header = store.read_header()
    totals = {"sources": 0, "ok": 0, "failed": 0, "views": 0}
    views_run = 0
    done = store.done_shards()
    busy = shard_seconds = 0.0
    bottlenecks: collections.Counter = collections.Counter()
    for shard in done:
        stats = store.read_stats(shard)
        for name in totals:
            totals[name] += int(stats.get(name, 0))
        if shards_run and shard in shards_run:
            views_run += int(stats.get("views", 0))
        if "device_busy_seconds" in stats:  # done markers written by the staged engine
            busy += float(stats["device_busy_seconds"])
            shard_seconds += float(stats.get("seconds") or 0.0)
            bottlenecks[stats.get("bottleneck")] += 1
    return JobSummary(
        device_busy=round(min(1.0, busy / shard_seconds), 4) if shard_seconds > 0 else None,
        bottleneck=bottlenecks.most_common(1)[0][0] if bottlenecks else None,
        out=store.url,
        shards=len(done),
        shards_run=len(shards_run or ()),
        seconds=seconds,
        random_weights=bool(header.get("random_weights")),
        views_run=views_run,
        skipped_files=int((header.get("skipped_files") or {}).get("count", 0)),
        **totals,
    )


#: Recorded spec fields that are GenerateSpec fields as they are (the rest: weights, params).
_REPLAYED_FIELDS = (
    "source", "model", "k", "seed", "shard_size", "view_size", "resize_filter", "format", "quality", "best_of",
    "store_embeddings",
    "interpolate", "alphas", "pair_across", "interpolation", "source_copy", "source_size",
)


def spec_from_store(url: str, weights: str | None = None, **overrides: Any) -> GenerateSpec:
    """Rebuild the GenerateSpec a store was made with, from its genview.json (to repair or finish it).

    The weights are found where the store recorded them unless `weights` says where they are now.
    """
    recorded = Store(url).spec
    fields = {name: recorded[name] for name in _REPLAYED_FIELDS if name in recorded}
    if not recorded.get("interpolate"):
        fields.pop("alphas", None)
        fields.pop("pair_across", None)
    fields.update(out=url, weights=weights or (recorded.get("weights") or {}).get("id"),
                  params=dict(recorded.get("params") or {}), **overrides)
    return GenerateSpec(**fields)


def repair(url: str, weights: str | None = None, progress: bool = True, **overrides: Any) -> tuple[list[int], JobSummary]:
    """Verify a store fully (sha256 included), remove its damaged shards and temp files, and redo them.

    Returns the shards that were redone and the job summary.
    Nothing is deleted before the rebuild is known to work: the model is loaded and the spec it gives
    compared with genview.json first (a missing or different model leaves the store as it was).
    Temp files of killed writes are not data: with nothing to redo they are removed without a model.
    """
    from genview.console_progress import progress_bar

    store = Store(url)
    with progress_bar(store.num_shards(), "repair: verify", "shards", enabled=progress) as bar:
        report = verify_store(url, require_complete=False, on_shard=lambda _shard: bar.update(1))
    if report.shards_planned and not report.damaged and not report.missing:
        for path in store.leftovers():
            store.fs.rm(path)
        return [], summarize(store)
    spec = spec_from_store(url, weights=weights, **overrides)
    backend = make_backend(spec)  # loads the model (in-process) or starts the workers (Ray): may fail here
    try:
        identity = store_identity(spec, backend.describe(spec))
        diff = spec_differences(_comparable(store.spec), _comparable(identity))
        if diff:
            raise StoreError(
                f"{url}: the model and settings found now would not remake this store's shards, so nothing was "
                "deleted:\n" + "\n".join(diff) + "\npass --weights with the weights it was made with"
            )
        for shard in report.damaged:
            store.reset_shard(shard)  # marker first: the shard is simply not done any more
        for path in store.leftovers():
            store.fs.rm(path)
        return report.damaged, _generate(spec, backend, overwrite=False, progress=progress, on_shard=None,
                                         check_hashes=False, live_progress=False)
    finally:
        backend.close()
