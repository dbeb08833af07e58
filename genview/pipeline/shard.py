"""The shard function: decode -> embed -> K views per source -> encode -> commit.

The same `run_shard` runs in-process and inside a Ray actor; nothing else differs between the two.
The stages run concurrently in `genview.pipeline.engine`; this module holds what each does to a
source (`load_and_decode`, `encode_item`, `sample_members`) and the writer (`run_shard`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from concurrent.futures import Executor
from typing import Any, Callable

import numpy as np
import torch

from genview import confinement
from genview.datastore import layout
from genview.datastore.fs import open_url
from genview.datastore.manifest import STATUS_FAILED, STATUS_OK
from genview.datastore.shard_writer import ShardWriter
from genview.datastore.store import Store
from genview.generator.base import ViewGenerator
from genview.pipeline.decode import DRAFT_FLOOR, DecodeError, decode_image, draft_min_side
from genview.pipeline.encode import FORMATS, encode_view
from genview.pipeline.engine import StageClock, pool_width, run_stages
from genview.pipeline.source_copy import SourceCopy

#: Sources are decoded at least this large (short side) before the encoder crops them to 224.
DECODE_MIN_SIDE = DRAFT_FLOOR


@dataclasses.dataclass
class ViewSettings:
    """The per-job settings the shard function needs (a subset of GenerateSpec)."""

    model: str
    k: int
    seed: int
    batch_size: int = 32
    best_of: int = 1
    format: str = "jpg"
    quality: int = 95
    view_size: int | None = None
    # Gen-SIS's alpha, the weight of the PRIMARY (source) embedding: view j is conditioned on
    # alpha_j * e_source + (1 - alpha_j) * e_secondary (lerp; slerp likewise), alpha_j = alphas[j % len(alphas)].
    alphas: list[float] | None = None
    interpolation: str = "lerp"
    store_embeddings: bool = False  # keep each source's condition embedding in its sample (KEY.emb.npy)
    exact: bool = False  # run every forward row by row: byte-identical views whatever the batch (slower)
    source_copy: str = "jpg"  # how the source is kept: jpg/png as the generator saw it, original, none
    source_size: int | None = None  # short side of the stored source copy (jpg/png)

    @property
    def copy(self) -> SourceCopy:
        """The source-member settings."""
        return SourceCopy(self.source_copy, self.source_size, self.quality)

    def alpha(self, view: int) -> float | None:
        """Gen-SIS's alpha of view `view`: the weight of the primary (None without interpolation)."""
        return None if not self.alphas else float(self.alphas[view % len(self.alphas)])


@dataclasses.dataclass
class SourceItem:
    """One source travelling through the stages."""

    record: dict[str, Any]  # its sources.parquet row
    data: bytes | None = None
    image: Any = None  # PIL image once decoded
    source_member: tuple[str, bytes] | None = None  # (extension, bytes) of the KEY.src.* member
    error: str | None = None
    embedding: torch.Tensor | None = None  # [D], on the model's device
    secondary: "SourceItem | None" = None  # the paired source, for interpolated views
    views: list[np.ndarray | None] = dataclasses.field(default_factory=list)  # HxWx3 uint8 per view
    seeds: list[int | None] = dataclasses.field(default_factory=list)
    similarity: list[float] = dataclasses.field(default_factory=list)
    encoded: list[tuple[bytes, int, int]] = dataclasses.field(default_factory=list)
    rows_left: int = 0  # generator rows of this source not yet finished by the device stage

    @property
    def ok(self) -> bool:
        """True while nothing has failed for this source."""
        return self.error is None


def _read_bytes(uri: str, cache: dict[str, Any], raw_path: bytes | None = None) -> bytes:
    """Read a source's bytes through fsspec, reusing one filesystem object per protocol.

    `raw_path` is the exact local path of a file whose name is not UTF-8 (sources' `uri_bytes`).
    Local files are opened through `genview.confinement` (under the job's source roots when it has
    any), URLs checked against its URL roots: the file read is the file checked, at that moment.
    """
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    if raw_path is not None or protocol == "file":
        return confinement.read_bytes(raw_path if raw_path is not None else uri, "read", shown=uri)
    confinement.check(uri, "read")
    if protocol not in cache:
        cache[protocol] = open_url(uri)[0]
    fs = cache[protocol]
    return fs.cat_file(fs._strip_protocol(uri))


def load_and_decode(
    record: dict[str, Any], fs_cache: dict[str, Any], copy: SourceCopy | None = None, min_side: int = DECODE_MIN_SIDE
) -> SourceItem:
    """Read and decode one source (and its secondary, if paired); failures become item.error.

    With `copy`, the source member is encoded here too, in the reading thread, from the image
    the generator will see.
    """
    item = _load_one(record, fs_cache, copy, min_side)
    if item.ok and record.get("secondary_candidates"):
        errors = []
        raw_paths = record.get("secondary_uri_bytes") or [None] * len(record["secondary_uris"])
        for source_id, uri, raw in zip(record["secondary_candidates"], record["secondary_uris"], raw_paths):
            secondary = _load_one({"source_id": source_id, "uri": uri, "uri_bytes": raw}, fs_cache, copy, min_side)
            if secondary.ok:
                item.secondary = secondary
                break
            errors.append(f"{source_id} ({uri}): {secondary.error}")
        else:
            item.error = "no secondary source could be decoded: " + "; ".join(errors)
    return item


def _load_one(
    record: dict[str, Any], fs_cache: dict[str, Any], copy: SourceCopy | None = None, min_side: int = DECODE_MIN_SIDE
) -> SourceItem:
    """Read and decode one image; failures become item.error instead of exceptions."""
    item = SourceItem(record=record)
    try:
        item.data = _read_bytes(record["uri"], fs_cache, record.get("uri_bytes"))
    except (OSError, ValueError) as exc:
        item.error = f"cannot read: {exc}"
        return item
    try:
        item.image = decode_image(item.data, min_side=min_side)
    except DecodeError as exc:
        item.error = str(exc)
        return item
    if copy is not None:
        item.source_member = copy.member(item.image, item.data, record["uri"])
        if copy.mode != "original":
            item.data = None  # the original bytes are not stored: free them now
    return item


def encode_item(item: SourceItem, settings: ViewSettings) -> SourceItem:
    """Encode a finished source's views (already at the view size) to image bytes."""
    item.encoded = [encode_view(px, settings.format, settings.quality, settings.view_size) for px in item.views]
    item.views = []  # free the raw pixels once encoded
    return item




def sample_members(item: SourceItem, settings: ViewSettings, params: dict[str, Any]) -> tuple[str, dict[str, bytes], list[dict[str, Any]]]:
    """Return the sample key, its tar members and its manifest rows (one per view)."""
    rec = item.record
    key = layout.sample_key(rec["source_id"])
    ext = FORMATS[settings.format][1]
    base_row = {
        "key": key,
        "source_id": rec["source_id"],
        "source_uri": rec["uri"],
        "label": rec.get("label"),
        "label_index": rec.get("label_index"),
        "shard": rec["shard"],
        "model": settings.model,
    }
    if not item.ok:
        return key, {}, [{**base_row, "status": STATUS_FAILED, "error": item.error}]
    members: dict[str, bytes] = {}
    if item.source_member is not None:
        members[f"src.{item.source_member[0]}"] = item.source_member[1]
    if rec.get("label_index") is not None:
        members["cls"] = str(int(rec["label_index"])).encode()  # webdataset's convention for the class
    interpolated = {}
    if item.secondary is not None:
        if item.secondary.source_member is not None:
            members[f"sec.{item.secondary.source_member[0]}"] = item.secondary.source_member[1]
        sec = item.secondary.record
        interpolated = {"secondary_id": sec["source_id"], "secondary_uri": sec["uri"]}
    rows = []
    for j, (data, width, height) in enumerate(item.encoded):
        members[f"v{j}.{ext}"] = data
        rows.append(
            {
                **base_row,
                "view": j,
                "member": f"{key}.v{j}.{ext}",
                "seed": item.seeds[j],
                "status": STATUS_OK,
                "similarity": item.similarity[j],
                "width": width,
                "height": height,
                "bytes": len(data),
                "primary_weight": settings.alpha(j),
                "secondary_id": interpolated.get("secondary_id"),
            }
        )
    meta = {
        "source_id": rec["source_id"],
        "uri": rec["uri"],
        "label": rec.get("label"),
        "label_index": rec.get("label_index"),
        "model": settings.model,
        "seeds": item.seeds,
        "similarity": item.similarity,
        "params": params,
        **interpolated,
    }
    if interpolated:
        # Gen-SIS's alpha per view (weight of the primary); v1 stores wrote "alphas" = weight of the secondary.
        meta["primary_weights"] = [settings.alpha(j) for j in range(len(item.encoded))]
        meta["interpolation"] = settings.interpolation
    members["json"] = json.dumps(meta, sort_keys=True).encode()
    if settings.store_embeddings:
        # The condition embedding, computed once per source, kept for reuse without the encoder
        # (e.g. nearest-neighbour pairing or analysis); plain .npy so numpy alone reads it.
        buffer = io.BytesIO()
        np.save(buffer, item.embedding.float().cpu().numpy())
        members["emb.npy"] = buffer.getvalue()
    return key, members, rows


def run_shard(
    store: Store,
    shard: int,
    records: list[dict[str, Any]],
    generator: ViewGenerator,
    settings: ViewSettings,
    pool: Executor,
    on_source: Callable[[SourceItem], None] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Generate and commit one whole shard; return its stats (also written as its done marker).

    The stages run concurrently (see `genview.pipeline.engine`); this thread is the writer: it
    turns each finished source into its tar members and manifest rows, in source order, and calls
    `on_source` once per source as it is written, and `before_commit` (if given) just before the
    shard is committed: it may raise, or end the process, to keep the shard uncommitted.
    """
    start = time.perf_counter()
    cpu_start = time.process_time()
    clock = StageClock()
    store.reset_shard(shard)  # whatever an interrupted attempt left is redone from scratch
    ok = failed = views = 0
    params = generator.params
    fs_cache: dict[str, Any] = {}
    min_side = draft_min_side(generator.input_side)  # JPEG drafts never below twice the model's input side

    def load(record: dict[str, Any]) -> SourceItem:
        # The source member (the image as the generator saw it) is encoded here too, in the io pool.
        return clock.timed("read_decode", load_and_decode, record, fs_cache, settings.copy, min_side)

    def encode(item: SourceItem) -> SourceItem:
        return clock.timed("encode", encode_item, item, settings)

    with ShardWriter(store, shard) as writer:
        items, engine_report = run_stages(records, generator, settings, pool, load, encode, clock)
        for item in items:
            wall, cpu = time.perf_counter(), time.thread_time()
            key, members, rows = sample_members(item, settings, params)
            if members:
                writer.write_sample(key, members)
                ok += 1
                views += len(rows)
            else:
                failed += 1
            writer.add_rows(rows)
            item.image = item.data = None  # written: free the source's pixels and bytes
            clock.add("write", time.perf_counter() - wall, time.thread_time() - cpu)
            if on_source is not None:
                on_source(item)
        seconds = time.perf_counter() - start
        stages = clock.report()
        engine = engine_report()
        if before_commit is not None:
            before_commit()
        return writer.commit(
            {
                "sources": len(records),
                "ok": ok,
                "failed": failed,
                "views": views,
                "seconds": round(seconds, 3),
                "views_per_second": round(views / seconds, 3) if seconds > 0 else None,
                "stage_seconds": {name: value["seconds"] for name, value in stages.items()},
                "stages": stages,
                "cpu_seconds": round(time.process_time() - cpu_start, 3),
                "device": str(generator.device),
                "batch_size": settings.batch_size,
                "exact": settings.exact,
                "threads": {"torch": torch.get_num_threads(), "io": pool_width(pool)},
                "bottleneck": bottleneck(stages, seconds),
                **engine,
            }
        )


def bottleneck(stages: dict[str, dict[str, float]], seconds: float) -> str:
    """Name the stage that limits throughput, from where the device thread waited.

    The device thread waiting for decoded sources means reading/decoding is behind; waiting for a
    free batch slot means the collector is behind, itself either waiting for the device to finish
    (an asynchronous device that is the limit), blocked on the encoders/writer, or busy; a device
    thread that (almost) never waits is the limit itself.
    """
    def wall(name: str) -> float:
        return stages.get(name, {}).get("seconds", 0.0)

    threshold = 0.05 * seconds
    if max(wall("device_wait_input"), wall("device_wait_slot")) <= threshold:
        return "device"
    if wall("device_wait_input") >= wall("device_wait_slot"):
        return "read_decode"
    if wall("collect_wait_device") > max(threshold, wall("collect_wait_output")):
        return "device"
    return "encode_write" if wall("collect_wait_output") > threshold else "collect"
