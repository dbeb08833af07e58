"""The shard function: decode -> embed -> K views per source -> encode -> commit, as iterator stages.

The same `run_shard` runs in-process and inside a Ray actor; nothing else differs between the two.
Each stage is an iterator -> iterator over `SourceItem`s in source order, so stages can be tested on lists.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import os
import time
from concurrent.futures import Executor, Future
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from genview.datastore import layout
from genview.datastore.fs import open_url
from genview.datastore.manifest import STATUS_FAILED, STATUS_OK
from genview.datastore.shard_writer import ShardWriter
from genview.datastore.store import Store
from genview.generator.base import ViewGenerator
from genview.generator.interpolation import interpolate
from genview.generator.seeding import view_seed
from genview.pipeline.decode import DecodeError, decode_image
from genview.pipeline.encode import FORMATS, encode_view
from genview.pipeline.source_copy import SourceCopy

#: Sources are decoded at least this large (short side) before the encoder crops them to 224.
DECODE_MIN_SIDE = 256


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
    alphas: list[float] | None = None  # set for interpolated views: view j uses alphas[j % len(alphas)]
    interpolation: str = "slerp"
    store_embeddings: bool = False  # keep each source's condition embedding in its sample (KEY.emb.npy)
    source_copy: str = "jpg"  # how the source is kept: jpg/png as the generator saw it, original, none
    source_size: int | None = None  # short side of the stored source copy (jpg/png)

    @property
    def copy(self) -> SourceCopy:
        """The source-member settings."""
        return SourceCopy(self.source_copy, self.source_size, self.quality)

    def alpha(self, view: int) -> float | None:
        """The interpolation ratio of view `view` (None without interpolation)."""
        return None if not self.alphas else float(self.alphas[view % len(self.alphas)])


@dataclasses.dataclass
class SourceItem:
    """One source travelling through the stages."""

    record: dict[str, Any]  # its sources.parquet row
    data: bytes | None = None
    image: Any = None  # PIL image once decoded
    source_member: tuple[str, bytes] | None = None  # (extension, bytes) of the KEY.src.* member
    error: str | None = None
    embedding: torch.Tensor | None = None  # [D]
    secondary: "SourceItem | None" = None  # the paired source, for interpolated views
    views: list[np.ndarray | None] = dataclasses.field(default_factory=list)  # HxWx3 uint8 per view
    seeds: list[int | None] = dataclasses.field(default_factory=list)
    similarity: list[float] = dataclasses.field(default_factory=list)
    encoded: list[tuple[bytes, int, int]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True while nothing has failed for this source."""
        return self.error is None


@dataclasses.dataclass
class StageTimer:
    """Seconds spent per stage in the calling thread (generation is what the GPU would do)."""

    seconds: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, stage: str, since: float) -> None:
        """Add the time elapsed since `since` to a stage."""
        self.seconds[stage] += time.perf_counter() - since


def _read_bytes(uri: str, cache: dict[str, Any], raw_path: bytes | None = None) -> bytes:
    """Read a source's bytes through fsspec, reusing one filesystem object per protocol.

    `raw_path` is the exact local path of a file whose name is not UTF-8 (sources' `uri_bytes`).
    """
    if raw_path is not None:
        with open(os.fsdecode(raw_path), "rb") as fh:
            return fh.read()
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    if protocol not in cache:
        cache[protocol] = open_url(uri)[0]
    fs = cache[protocol]
    return fs.cat_file(fs._strip_protocol(uri))


def load_and_decode(record: dict[str, Any], fs_cache: dict[str, Any], copy: SourceCopy | None = None) -> SourceItem:
    """Read and decode one source (and its secondary, if paired); failures become item.error.

    With `copy`, the source member is encoded here too, in the reading thread, from the image
    the generator will see.
    """
    item = _load_one(record, fs_cache, copy)
    if item.ok and record.get("secondary_candidates"):
        errors = []
        raw_paths = record.get("secondary_uri_bytes") or [None] * len(record["secondary_uris"])
        for source_id, uri, raw in zip(record["secondary_candidates"], record["secondary_uris"], raw_paths):
            secondary = _load_one({"source_id": source_id, "uri": uri, "uri_bytes": raw}, fs_cache, copy)
            if secondary.ok:
                item.secondary = secondary
                break
            errors.append(f"{source_id} ({uri}): {secondary.error}")
        else:
            item.error = "no secondary source could be decoded: " + "; ".join(errors)
    return item


def _load_one(record: dict[str, Any], fs_cache: dict[str, Any], copy: SourceCopy | None = None) -> SourceItem:
    """Read and decode one image; failures become item.error instead of exceptions."""
    item = SourceItem(record=record)
    try:
        item.data = _read_bytes(record["uri"], fs_cache, record.get("uri_bytes"))
    except (OSError, ValueError) as exc:
        item.error = f"cannot read: {exc}"
        return item
    try:
        item.image = decode_image(item.data, min_side=DECODE_MIN_SIDE)
    except DecodeError as exc:
        item.error = str(exc)
        return item
    if copy is not None:
        item.source_member = copy.member(item.image, item.data, record["uri"])
        if copy.mode != "original":
            item.data = None  # the original bytes are not stored: free them now
    return item


def decode_stage(
    records: Iterable[dict[str, Any]], pool: Executor, lookahead: int = 16, copy: SourceCopy | None = None
) -> Iterator[SourceItem]:
    """Read+decode sources in a thread pool, `lookahead` ahead, yielding them in order."""
    fs_cache: dict[str, Any] = {}
    pending: collections.deque[Future] = collections.deque()
    for record in records:
        pending.append(pool.submit(load_and_decode, record, fs_cache, copy))
        if len(pending) >= lookahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def embed_stage(items: Iterable[SourceItem], generator: ViewGenerator, batch_size: int, timer: StageTimer) -> Iterator[SourceItem]:
    """Compute each decoded source's condition embedding once, in batches."""
    batch: list[SourceItem] = []

    def flush() -> Iterator[SourceItem]:
        good = [it for it in batch if it.ok]
        good += [it.secondary for it in good if it.secondary is not None]
        if good:
            start = time.perf_counter()
            embeddings = generator.embed([it.image for it in good])
            timer.add("embed", start)
            for it, emb in zip(good, embeddings):
                it.embedding = emb
                it.image = None  # the decoded pixels are not needed past the encoder
        yield from batch
        batch.clear()

    for item in items:
        batch.append(item)
        if len(batch) >= batch_size:
            yield from flush()
    yield from flush()


def generate_stage(
    items: Iterable[SourceItem], generator: ViewGenerator, settings: ViewSettings, timer: StageTimer
) -> Iterator[SourceItem]:
    """Make K views per source, batching (source x view x candidate) rows across sources.

    Rows are source-major, so sources complete in order; a source is yielded as soon as all of its
    views are made. With best_of > 1 each view keeps the candidate most similar to its source.
    """
    k, best_of, batch_size = settings.k, settings.best_of, settings.batch_size
    waiting: collections.deque[SourceItem] = collections.deque()  # in source order
    rows: collections.deque[tuple[SourceItem, int, int]] = collections.deque()  # (item, view, candidate)

    def run_batch(batch: list[tuple[SourceItem, int, int]]) -> None:
        start = time.perf_counter()
        embeddings = torch.stack([it.embedding for it, _, _ in batch])
        conditions = embeddings
        if settings.alphas:
            secondaries = torch.stack([it.secondary.embedding for it, _, _ in batch])
            alphas = [settings.alpha(j) for _, j, _ in batch]
            conditions = interpolate(embeddings, secondaries, alphas, settings.interpolation)
        seeds = [view_seed(settings.seed, it.record["source_id"], j, c) for it, j, c in batch]
        labels = None
        if generator.needs_labels:
            labels = torch.tensor([it.record["label_index"] for it, _, _ in batch], dtype=torch.long)
        images = generator.generate(conditions, seeds, labels=labels)
        timer.add("generate", start)
        start = time.perf_counter()
        # Similarity under the conditioning encoder: every view gets its faithfulness score.
        view_embeddings = generator.embed(images)
        # Cosine, not a dot product: unCLIP's embeddings are raw CLIP vectors (unit-norm ones give the same).
        similarity = torch.nn.functional.cosine_similarity(view_embeddings, embeddings, dim=1).tolist()
        timer.add("score", start)
        pixels = images.permute(0, 2, 3, 1).numpy()
        for (item, j, _), px, seed, sim in zip(batch, pixels, seeds, similarity):
            if item.seeds[j] is None or sim > item.similarity[j]:
                item.views[j], item.seeds[j], item.similarity[j] = px.copy(), seed, float(sim)

    def finished() -> Iterator[SourceItem]:
        pending_items = {id(it) for it, _, _ in rows}
        while waiting and id(waiting[0]) not in pending_items:
            yield waiting.popleft()

    for item in items:
        waiting.append(item)
        if item.ok:
            item.views = [None] * k
            item.seeds = [None] * k
            item.similarity = [float("-inf")] * k
            rows.extend((item, j, c) for j in range(k) for c in range(best_of))
        while len(rows) >= batch_size:
            run_batch([rows.popleft() for _ in range(batch_size)])
            yield from finished()
        yield from finished()
    while rows:
        run_batch([rows.popleft() for _ in range(min(batch_size, len(rows)))])
    yield from finished()


def _encode_item(item: SourceItem, settings: ViewSettings) -> SourceItem:
    item.encoded = [encode_view(px, settings.format, settings.quality, settings.view_size) for px in item.views]
    item.views = []  # free the raw pixels once encoded
    item.image = None
    return item


def encode_stage(items: Iterable[SourceItem], settings: ViewSettings, pool: Executor, lookahead: int = 8) -> Iterator[SourceItem]:
    """Encode each source's views in a thread pool while the next batch generates; order is kept."""
    pending: collections.deque[Future] = collections.deque()
    for item in items:
        if item.ok:
            pending.append(pool.submit(_encode_item, item, settings))
        else:
            done: Future = Future()
            done.set_result(item)
            pending.append(done)
        if len(pending) >= lookahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


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
                "alpha": settings.alpha(j),
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
        meta["alphas"] = [settings.alpha(j) for j in range(len(item.encoded))]
        meta["interpolation"] = settings.interpolation
    members["json"] = json.dumps(meta, sort_keys=True).encode()
    if settings.store_embeddings:
        # The condition embedding, computed once per source, kept for reuse without the encoder
        # (e.g. nearest-neighbour pairing or analysis); plain .npy so numpy alone reads it.
        buffer = io.BytesIO()
        np.save(buffer, item.embedding.numpy().astype(np.float32))
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
) -> dict[str, Any]:
    """Generate and commit one whole shard; return its stats (also written as its done marker)."""
    start = time.perf_counter()
    timer = StageTimer()
    store.reset_shard(shard)  # whatever an interrupted attempt left is redone from scratch
    ok = failed = views = 0
    params = generator.params
    with ShardWriter(store, shard) as writer:
        stream = decode_stage(records, pool, copy=settings.copy)
        stream = embed_stage(stream, generator, settings.batch_size, timer)
        stream = generate_stage(stream, generator, settings, timer)
        stream = encode_stage(stream, settings, pool)
        for item in stream:
            key, members, rows = sample_members(item, settings, params)
            if members:
                writer.write_sample(key, members)
                ok += 1
                views += len(rows)
            else:
                failed += 1
            writer.add_rows(rows)
            if on_source is not None:
                on_source(item)
        seconds = time.perf_counter() - start
        return writer.commit(
            {
                "sources": len(records),
                "ok": ok,
                "failed": failed,
                "views": views,
                "seconds": round(seconds, 3),
                "views_per_second": round(views / seconds, 3) if seconds > 0 else None,
                "stage_seconds": {name: round(value, 3) for name, value in sorted(timer.seconds.items())},
            }
        )
