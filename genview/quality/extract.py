"""One shard's features: Inception pool, condition-encoder and independent-scorer embeddings of sources and views.

A shard is the unit of work, as in generation: its features go to quality/features/NNNNNN.npz and
its done marker (quality/done/NNNNNN.json) is written last, so a rerun skips finished shards and a
killed run never leaves a marker without its features.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from typing import Any, Callable

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from genview.datastore import layout
from genview.datastore.fs import open_url, write_atomic
from genview.datastore.manifest import STATUS_OK
from genview.datastore.reader import iter_shard
from genview.datastore.store import Store
from genview.pipeline.decode import decode_image
from genview.quality import tables
from genview.quality.reference import DEFAULT_FID_REFERENCE, reference_images


@dataclasses.dataclass
class Networks:
    """The encoders quality needs: FID Inception, the generator's own embed (conditioning space), the optional scorer."""

    inception: Any  # genview.quality.inception.InceptionFeatures
    condition_embed: Callable[[torch.Tensor], torch.Tensor]  # uint8 [N,3,H,W] -> [N, D]
    scorer: Any | None = None  # genview.quality.scorer.IndependentScorer
    fid_reference: str = DEFAULT_FID_REFERENCE  # how a source becomes FID's reference image (reference.py)


def decode_rgb(data: bytes) -> torch.Tensor:
    """Decode image bytes to a uint8 [3, H, W] RGB tensor, as the generator saw it (EXIF applied, alpha over white)."""
    img = decode_image(data)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def _read_source(uri: str) -> bytes:
    """Read an original source through fsspec (stores made with --source-copy none keep no copy)."""
    fs, path = open_url(uri)
    return fs.cat_file(path)


def _embed_condition(embed: Callable, images: list[torch.Tensor], batch: int = 64) -> np.ndarray:
    """Run the generator's embed per same-size batch (it takes one [N,3,H,W] tensor)."""
    out: list[np.ndarray | None] = [None] * len(images)
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        by_size.setdefault(tuple(img.shape[-2:]), []).append(i)
    for indices in by_size.values():
        for start in range(0, len(indices), batch):
            chunk = indices[start : start + batch]
            feats = embed(torch.stack([images[i] for i in chunk])).float().cpu().numpy()
            for i, row in zip(chunk, feats):
                out[i] = row
    return np.stack(out).astype(np.float32)


#: Sources (with their K views) decoded and embedded together: bounds a shard's decoded images in memory and
#: paces the progress bar inside a shard (a shard of 1,000 sources x 10 views is 11,000 images).
CHUNK_SOURCES = 32


def _embed_chunk(networks: Networks, src_images: list[torch.Tensor], view_images: list[torch.Tensor],
                 view_size_of_src: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """Every network's features of a few sources and their views."""
    # FID's reference: the source as the generator saw it, at its views' size (DA IC-GAN §4.1), unless asked otherwise.
    reference = reference_images(src_images, view_size_of_src, networks.fid_reference)
    out = {
        "src_inception": networks.inception.embed(reference).numpy(),
        "view_inception": networks.inception.embed(view_images).numpy(),
        "src_condition": _embed_condition(networks.condition_embed, src_images),
        "view_condition": _embed_condition(networks.condition_embed, view_images),
    }
    if networks.scorer is not None:
        out["src_scorer"] = networks.scorer.embed(src_images).numpy()
        out["view_scorer"] = networks.scorer.embed(view_images).numpy()
    return out


def extract_shard(store: Store, shard: int, networks: Networks,
                  on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Compute and commit one shard's features; return its marker (counts, seconds).

    ``on_progress(sources, views)`` is called as each chunk of sources is embedded (counts of that chunk).
    """
    start = time.perf_counter()
    # This shard's manifest fragment only: reading the whole manifest per shard would be quadratic.
    with store.fs.open(layout.shard_manifest(store.root, shard), "rb") as fh:
        manifest = pq.read_table(fh)
    rows = manifest.filter(pc.equal(manifest["status"], STATUS_OK))
    rows = rows.select(["key", "source_id", "source_uri", "view", "member", "label"]).to_pylist()
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(row["key"], []).append(row)
    src_ids, src_labels, view_src, view_idx = [], [], [], []
    features: dict[str, list[np.ndarray]] = {}
    chunk: tuple[list, list, list] = ([], [], [])  # source images, view images, each source's view size

    def embed_chunk() -> None:
        if not chunk[0]:
            return
        for name, array in _embed_chunk(networks, *chunk).items():
            features.setdefault(name, []).append(array)
        if on_progress is not None:
            on_progress(len(chunk[0]), len(chunk[1]))
        for part in chunk:
            part.clear()

    for key, members in iter_shard(store, shard):
        if key not in by_key:
            continue
        src = next((data for name, data in members.items() if name.startswith("src.")), None)
        first = by_key[key][0]
        if src is None:
            try:
                src = _read_source(first["source_uri"])
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"shard {shard:06d} sample {key} has no source copy (--source-copy none) and its source "
                    f"{first['source_uri']} cannot be read: {exc}"
                ) from None
        chunk[0].append(decode_rgb(src))
        src_ids.append(first["source_id"])
        src_labels.append("(none)" if first["label"] is None else str(first["label"]))
        for row in sorted(by_key[key], key=lambda r: r["view"]):
            suffix = row["member"].split(".", 1)[1]
            chunk[1].append(decode_rgb(members[suffix]))
            view_src.append(row["source_id"])
            view_idx.append(row["view"])
        chunk[2].append(tuple(chunk[1][-1].shape[-2:]))
        if len(chunk[0]) >= CHUNK_SOURCES:
            embed_chunk()
    embed_chunk()
    arrays: dict[str, np.ndarray] = {
        "source_id": np.asarray(src_ids, dtype=np.int64),
        "label": np.asarray(src_labels, dtype=str),
        "view_source_id": np.asarray(view_src, dtype=np.int64),
        "view": np.asarray(view_idx, dtype=np.int32),
        "view_shard": np.full(len(view_idx), shard, dtype=np.int32),
        **{name: np.concatenate(parts) for name, parts in features.items()},
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(store.fs, tables.features_path(store.root, shard), buffer.getvalue())
    marker = {"shard": shard, "sources": len(src_ids), "views": len(view_idx), "seconds": round(time.perf_counter() - start, 3)}
    write_atomic(store.fs, tables.done_path(store.root, shard), (json.dumps(marker, sort_keys=True) + "\n").encode())
    return marker


def load_features(store: Store, shard: int) -> dict[str, np.ndarray]:
    """Read a done shard's feature arrays."""
    with store.fs.open(tables.features_path(store.root, shard), "rb") as fh:
        with np.load(io.BytesIO(fh.read()), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
