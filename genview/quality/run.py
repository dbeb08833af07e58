"""`genview quality`: measure a store's views per shard (resumable), then write its per-view and per-class tables."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import sys
import time
from typing import Any, Callable

import numpy as np
import pyarrow.compute as pc

from genview.datastore.fs import write_atomic
from genview.datastore.store import Store, StoreError
from genview.quality import tables
from genview.quality.defaults import DEFAULT_K_NN
from genview.quality.aggregate import build_tables
from genview.quality.extract import Networks, extract_shard
from genview.quality.spill import SpilledRows
from genview.quality.reference import DEFAULT_FID_REFERENCE, FID_REFERENCES

#: Settings whose change makes stored features stale (the networks that made them).
FEATURE_IDENTITY = ("inception", "condition", "scorer")


@dataclasses.dataclass
class QualitySpec:
    """What `genview quality` was asked to do."""

    store: str
    inception_weights: str
    scorer: str | None = None
    scorer_weights: str | None = None
    generator_weights: str | None = None
    encoder_weights: str | None = None
    k_nn: int = DEFAULT_K_NN
    fid_views: str = "one"
    fid_reference: str = DEFAULT_FID_REFERENCE
    kid_subsets: int = 100
    device: str = "cpu"
    batch_size: int = 32
    overwrite: bool = False
    ray_address: str | None = None
    workers: int | None = None
    progress: bool = True
    scratch: str | None = None  # local folder for the spilled features of the tables step (default: temp folder)


@dataclasses.dataclass
class QualityReport:
    """What a run measured and where it wrote it."""

    store: str
    shards_run: int
    shards_total: int
    seconds: float
    classes: Any  # pyarrow Table
    settings: dict[str, Any]

    @property
    def random_networks(self) -> list[str]:
        """Names of the networks whose weights were random presets."""
        return [name for name, info in self.settings["networks"].items() if info and info.get("random_init")]


def load_condition_model(store_spec: dict[str, Any], generator_weights: str | None, encoder_weights: str | None, device: str):
    """Load the generator that made the store (its embed is the conditioning space); refuse other weights."""
    from genview.generator.registry import get_generator_class

    recorded = store_spec.get("weights") or {}
    path = generator_weights or recorded.get("id")
    if not path:
        raise ValueError("the store records no generator weights: pass --generator-weights DIR")
    params = dict(store_spec.get("params") or {})
    if encoder_weights:
        params["encoder_weights"] = encoder_weights
    cls = get_generator_class(store_spec["model"])
    try:
        generator = cls.from_pretrained(path, device=device, **params)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{exc}\nNN corruption is measured with the encoder that conditioned the views: pass --generator-weights DIR "
            "(and --encoder-weights FILE) pointing at the store's model"
        ) from None
    if recorded.get("sha256") and generator.weights.sha256 != recorded["sha256"]:
        raise ValueError(
            f"--generator-weights {path}: sha256 {generator.weights.sha256[:12]} differs from the store's model "
            f"({recorded['sha256'][:12]}); NN corruption must be measured in the space that conditioned the views"
        )
    return generator


def load_networks(spec: QualitySpec, store_spec: dict[str, Any]) -> tuple[Networks, dict[str, Any]]:
    """Load the FID Inception, the store's conditioning encoder and the optional independent scorer."""
    from genview.quality.inception import InceptionFeatures
    from genview.quality.scorer import IndependentScorer

    inception = InceptionFeatures(spec.inception_weights, device=spec.device, batch_size=spec.batch_size)
    generator = load_condition_model(store_spec, spec.generator_weights, spec.encoder_weights, spec.device)
    scorer = None
    if spec.scorer:
        scorer = IndependentScorer(spec.scorer, spec.scorer_weights, device=spec.device)
        if store_spec.get("model") == "unclip" and spec.scorer.startswith("openclip"):
            # unCLIP is conditioned on an OpenCLIP image embedding: the same space would not be independent.
            print("note: unCLIP is conditioned on an OpenCLIP embedding; prefer --scorer dino for an independent score",
                  file=sys.stderr)
    identity = {
        # The reference preprocessing decides the stored source features as much as the weights do.
        "inception": {**inception.weights.to_dict(), "reference": spec.fid_reference},
        "condition": {"model": store_spec["model"], **generator.weights.to_dict()},
        "scorer": {"spec": spec.scorer, **scorer.weights.to_dict()} if scorer else None,
    }
    networks = Networks(inception=inception, condition_embed=generator.embed, scorer=scorer, fid_reference=spec.fid_reference)
    return networks, identity


def _what_counts(info: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a network's record that decides its features: digest and kind, not the path it was read from."""
    return None if info is None else {k: info.get(k) for k in ("sha256", "spec", "model", "reference")}


def _check_identity(store: Store, identity: dict[str, Any], overwrite: bool) -> None:
    """Refuse to mix features of different networks in one store; --overwrite starts over."""
    old = tables.read_settings(store.fs, store.root)
    qdir = tables.quality_path(store.root)
    if old is not None and not overwrite:
        before = old.get("networks") or {}
        stale = [name for name in FEATURE_IDENTITY if _what_counts(before.get(name)) != _what_counts(identity.get(name))]
        if stale:
            lines = [f"  {name}: store has {json.dumps((old.get('networks') or {}).get(name))}, this run has "
                     f"{json.dumps(identity.get(name))}" for name in stale]
            raise StoreError(
                f"{store.url} was measured with other networks:\n" + "\n".join(lines) + "\npass --overwrite to measure again"
            )
    if overwrite and store.fs.exists(qdir):
        store.fs.rm(qdir, recursive=True)


def quality_done_shards(store: Store) -> set[int]:
    """Return the shards whose quality features are committed."""
    directory = tables.quality_path(store.root, tables.DONE_DIR)
    store.fs.invalidate_cache(directory)
    if not store.fs.exists(directory):
        return set()
    done = set()
    for path in store.fs.ls(directory, detail=False):
        stem, _, ext = path.rsplit("/", 1)[-1].partition(".")
        if ext == "json" and stem.isdigit():
            done.add(int(stem))
    return done


def _write_settings(store: Store, settings: dict[str, Any]) -> None:
    write_atomic(store.fs, tables.quality_path(store.root, tables.SETTINGS_FILE),
                 (json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n").encode())


class _ShardProgress:
    """Counts measured sources and views on genview's progress bar, and logs a line, as each shard is committed.

    In-process runs also report each embedded chunk of a shard (`chunk`), so a long shard moves the bar;
    the shard's commit then adds only what its chunks did not.
    """

    def __init__(self, total: int, shards: int, enabled: bool, log: Callable[[str], None]):
        from genview.pipeline.progress import JobProgress

        self.shards, self.done, self.log = shards, 0, log
        self.bar = JobProgress(total=total, initial=0, desc="quality", enabled=enabled)
        self.in_shard = [0, 0]  # sources and views of the running shard already on the bar

    def chunk(self, sources: int, views: int) -> None:
        self.in_shard[0] += sources
        self.in_shard[1] += views
        self.bar.sources_done(sources, views, 0)

    def __call__(self, marker: dict[str, Any]) -> None:
        self.done += 1
        sources, views = marker["sources"] - self.in_shard[0], marker["views"] - self.in_shard[1]
        self.in_shard = [0, 0]
        self.bar.sources_done(sources, views, 0, shard=marker["shard"])
        self.bar.bar.set_postfix(shards=f"{self.done}/{self.shards}", views=self.bar.views, refresh=False)
        where = f" on pid {marker['pid']}" if "pid" in marker else ""
        self.log(f"quality shard {marker['shard']:06d}: {marker['sources']} sources, {marker['views']} views, "
                 f"{marker['seconds']:.1f} s{where} ({self.done}/{self.shards})")

    def close(self) -> None:
        self.bar.close()


def _shard_progress(sources: Any, todo: list[int], enabled: bool, log: Callable[[str], None]) -> _ShardProgress:
    """The one progress display of a quality run: sources to measure in the shards still to do."""
    shard_of = sources.column("shard").to_numpy(zero_copy_only=False)
    total = int(np.isin(shard_of, np.asarray(todo, dtype=shard_of.dtype)).sum()) if todo else 0
    return _ShardProgress(total, len(todo), enabled, log)


def measure_quality(
    spec: QualitySpec, networks: tuple[Networks, dict[str, Any]] | None = None, log: Callable[[str], None] | None = None
) -> QualityReport:
    """Measure every done shard not yet measured, then (re)write quality/classes.parquet and views.parquet."""
    log = log or (lambda text: print(text, file=sys.stderr))
    store = Store(spec.store)
    header = store.read_header()
    if spec.k_nn < 1:
        raise ValueError(f"--k-nn must be >= 1, got {spec.k_nn}")
    if spec.fid_reference not in FID_REFERENCES:
        raise ValueError(f"--fid-reference must be one of {', '.join(FID_REFERENCES)}, got {spec.fid_reference!r}")
    if spec.workers is not None and spec.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {spec.workers}")
    nets, identity = networks or load_networks(spec, header["spec"])
    # The spec decides how sources become FID's reference, also for networks loaded elsewhere (tests, Ray actors).
    nets = dataclasses.replace(nets, fid_reference=spec.fid_reference)
    identity = {**identity, "inception": {**identity["inception"], "reference": spec.fid_reference}}
    for name, info in identity.items():
        if info and info.get("random_init"):
            log(f"WARNING: the {name} network ({info['id']}) has RANDOM weights: its figures do not measure view quality")
    _check_identity(store, identity, spec.overwrite)
    for name in (tables.DONE_DIR, tables.FEATURES_DIR):  # a no-op on object stores
        store.fs.makedirs(tables.quality_path(store.root, name), exist_ok=True)
    settings = {
        "networks": identity, "k_nn": spec.k_nn, "fid_views": spec.fid_views, "fid_reference": spec.fid_reference,
        "kid_subsets": spec.kid_subsets,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "complete": False,
    }
    _write_settings(store, settings)
    start = time.perf_counter()
    store_done = sorted(store.done_shards())
    todo = [s for s in store_done if s not in quality_done_shards(store)]
    sources = store.read_sources().select(["source_id", "label_index", "shard"])
    progress = _shard_progress(sources, todo, spec.progress, log)
    try:
        if todo and (spec.ray_address or spec.workers):
            from genview.quality.ray_runner import extract_on_ray

            extract_on_ray(spec, todo, identity, progress)
        else:
            for shard in todo:
                progress(extract_shard(store, shard, nets, on_progress=progress.chunk))
    finally:
        progress.close()
    ids = sources.column("source_id").to_numpy(zero_copy_only=False)
    indices = pc.fill_null(sources.column("label_index"), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.argsort(ids, kind="stable")
    log(f"quality: neighbourhoods and per-class tables over {len(store_done)} measured shards")
    with SpilledRows(spec.scratch) as spill:
        result = build_tables(
            store, store_done, spill, spec.k_nn, spec.fid_views, spec.kid_subsets, label_index=(ids[order], indices[order]),
            device=spec.device, progress=spec.progress, log=log,
        )
        with open(result.views_file, "rb") as fh:
            write_atomic(store.fs, tables.quality_path(store.root, tables.VIEWS_FILE), fh.read())
    write_atomic(store.fs, tables.quality_path(store.root, tables.SOURCES_FILE), tables.table_bytes(result.sources))
    write_atomic(store.fs, tables.quality_path(store.root, tables.CLASSES_FILE), tables.table_bytes(result.classes))
    classes, overall = result.classes, result.overall
    planned = store.num_shards()
    settings.update(
        num_classes=int(indices.max()) + 1 if len(indices) and indices.max() >= 0 else 0,  # the length of a dense soft label (label_index 0..C-1)
        complete=len(store_done) == planned, shards_measured=len(store_done), shards_planned=planned,
        overall={k: v for k, v in overall.items() if k not in ("scope", "label")},
        finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    _write_settings(store, settings)
    return QualityReport(spec.store, len(todo), len(store_done), time.perf_counter() - start, classes, settings)
