"""Build small genview stores straight from the store-format contract (webdataset.TarWriter + pyarrow).

Independent of genview's own writer on purpose: it proves the format is readable as specified.
Every image carries a 16x16 marker block in its top-left corner: red = 5 + 6 * source_id (mod 256),
green = 0 for a source, 60 * (j + 1) for view j, so a test can tell which image came back.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds
from PIL import Image

# The one schema the contract names; the writing below stays independent of genview's writer.
from genview.datastore.manifest import MANIFEST_SCHEMA

MARKER = 16
ALPHAS = (0.2, 0.5, 0.8)


def marker_red(source_id: int) -> int:
    """Red value of a source's marker."""
    return (5 + 6 * source_id) % 256


def kind_green(view: int) -> int:
    """Green value of the marker: 0 for the source (view -1), 60 * (j + 1) for view j."""
    return 0 if view < 0 else 60 * (view + 1)


def read_marker(image) -> tuple[int, int]:
    """Return (red, green) at the centre of the marker of a PIL image or uint8 [3, H, W] tensor."""
    if isinstance(image, Image.Image):
        r, g, _ = image.convert("RGB").getpixel((MARKER // 2, MARKER // 2))
        return int(r), int(g)
    return int(image[0, MARKER // 2, MARKER // 2]), int(image[1, MARKER // 2, MARKER // 2])


def identify(image, candidates: Sequence[int], k: int) -> tuple[int, int]:
    """Return (source_id, view) whose marker is nearest to the image's (view -1 = source)."""
    r, g = read_marker(image)
    sid = min(candidates, key=lambda s: abs(marker_red(s) - r))
    view = min(range(-1, k), key=lambda j: abs(kind_green(j) - g))
    return sid, view


def _pattern(source_id: int, size: int, seed: int) -> np.ndarray:
    """A source's texture: a few random coloured rectangles on a random background (seeded by id)."""
    rng = np.random.default_rng([seed, source_id])
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    for _ in range(4):
        x0, y0 = rng.integers(0, size - 4, 2)
        w, h = rng.integers(4, size // 2, 2)
        img[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, 3)
    return img


def _with_marker(img: np.ndarray, source_id: int, view: int, marker: bool) -> np.ndarray:
    img = img.copy()
    if marker:
        img[:MARKER, :MARKER] = (marker_red(source_id), kind_green(view), 128)
    return img


def _encode(img: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpg":
        Image.fromarray(img).save(buffer, format="JPEG", quality=95)
    else:
        Image.fromarray(img).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class FakeStore:
    """What a test needs to know about a built store."""

    root: Path
    k: int
    shard_ids: dict[int, list[int]]  # shard -> ok source ids in tar order
    failed_ids: list[int]
    labels: dict[int, str]
    similarity: dict[int, list[float]]
    secondary: dict[int, int] = field(default_factory=dict)

    @property
    def ok_ids(self) -> list[int]:
        """All source ids with a tar sample."""
        return [sid for ids in self.shard_ids.values() for sid in ids]

    @property
    def url(self) -> str:
        """The store path as a string."""
        return str(self.root)

    def tar(self, shard: int) -> Path:
        """Path of a shard's tar."""
        return self.root / "shards" / f"{shard:06d}.tar"


def similarity_of(source_id: int, k: int) -> list[float]:
    """Per-view similarity: 0.4, 0.6, 0.8, ... except every source with id % 7 == 3 has all views below 0.35."""
    if source_id % 7 == 3:
        return [round(0.1 + 0.1 * j, 3) for j in range(k)]
    return [round(0.4 + 0.2 * j, 3) for j in range(k)]


def build_store(
    root: str | Path,
    shard_sizes: Sequence[int] = (5, 1, 8, 3, 6, 2, 4),
    k: int = 3,
    failed_in: Sequence[int] = (2, 5),
    interpolate: bool = False,
    size: int = 32,
    marker: bool = True,
    seed: int = 0,
    num_classes: int = 3,
    format_version: int = 2,
) -> FakeStore:
    """Write a store of len(shard_sizes) shards with the given numbers of ok samples (plus one failed source per shard in failed_in).

    format_version=2 (DESIGN.md): done markers stats/NNNNNN.json, a KEY.cls member, the shard count and
    brace pattern in genview.json; format_version=1: markers manifest/_NNNNNN.json, no KEY.cls.
    """
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    (root / "manifest").mkdir(parents=True, exist_ok=True)
    plan: list[tuple[int, int, bool]] = []  # (source_id, shard, failed)
    sid = 0
    for shard, n in enumerate(shard_sizes):
        for i in range(n):
            plan.append((sid, shard, False))
            sid += 1
            if shard in failed_in and i == 0:
                plan.append((sid, shard, True))
                sid += 1
    labels = {s: f"class{s % num_classes}" for s, _, _ in plan}
    ok_all = [s for s, _, failed in plan if not failed]
    rng = np.random.default_rng(seed + 1000)
    secondary = {}
    if interpolate:
        for s in ok_all:
            others = [o for o in ok_all if o != s]
            secondary[s] = int(others[int(rng.integers(len(others)))])
    header = {
        "format": "genview-store",
        "format_version": format_version,
        "genview_version": "test",
        "spec": {
            "model": "fake",
            "weights": {"id": "none", "sha256": "0" * 64, "random_init": True, "preset": "tiny"},
            "k": k,
            "seed": seed,
            "params": {"interpolate": interpolate},
            "shard_size": max(shard_sizes) + 1,
            "source": "fake",
            "view_format": "jpg",
        },
    }
    if format_version >= 2:
        header["num_shards"] = len(shard_sizes)
        header["shard_pattern"] = f"shards/{{000000..{len(shard_sizes) - 1:06d}}}.tar"
    (root / "genview.json").write_text(json.dumps(header, indent=2))
    pq.write_table(
        pa.table(
            {
                "source_id": pa.array([s for s, _, _ in plan], pa.int64()),
                "uri": pa.array([f"fake/{s:05d}.png" for s, _, _ in plan], pa.string()),
                "label": pa.array([labels[s] for s, _, _ in plan], pa.string()),
                "label_index": pa.array([s % num_classes for s, _, _ in plan], pa.int32()),
                "shard": pa.array([sh for _, sh, _ in plan], pa.int32()),
            }
        ),
        root / "sources.parquet",
    )
    shard_ids: dict[int, list[int]] = {}
    sims = {}
    for shard in range(len(shard_sizes)):
        rows = []
        tar_path = root / "shards" / f"{shard:06d}.tar"
        ids = []
        with open(tar_path, "wb") as fh:
            writer = wds.TarWriter(fh, encoder=False, mtime=0.0)
            for s, sh, failed in plan:
                if sh != shard:
                    continue
                key = f"{s:010d}"
                base = {"key": key, "source_id": s, "source_uri": f"fake/{s:05d}.png", "label": labels[s],
                        "shard": shard, "model": "fake"}
                if failed:
                    rows.append({**base, "status": "failed", "error": "cannot identify image file"})
                    continue
                ids.append(s)
                pattern = _pattern(s, size, seed)
                members = {"src.png": _encode(_with_marker(pattern, s, -1, marker), "png")}
                sim = similarity_of(s, k)
                sims[s] = sim
                meta = {"source_id": s, "uri": f"fake/{s:05d}.png", "label": labels[s], "label_index": s % num_classes,
                        "model": "fake", "seeds": [s * 100 + j for j in range(k)], "similarity": sim, "params": {}}
                alphas = [ALPHAS[j % len(ALPHAS)] for j in range(k)]
                if interpolate:
                    other = _pattern(secondary[s], size, seed)
                    members["sec.png"] = _encode(_with_marker(other, secondary[s], -1, marker), "png")
                    meta.update(secondary_id=secondary[s], alphas=alphas)
                for j in range(k):
                    if interpolate:
                        view = ((1 - alphas[j]) * pattern + alphas[j] * other).astype(np.uint8)
                    else:
                        view = np.roll(pattern, shift=j + 1, axis=1)
                    data = _encode(_with_marker(view, s, j, marker), "jpg")
                    members[f"v{j}.jpg"] = data
                    rows.append({**base, "view": j, "member": f"{key}.v{j}.jpg", "seed": s * 100 + j, "status": "ok",
                                 "similarity": sim[j], "width": size, "height": size, "bytes": len(data),
                                 "alpha": alphas[j] if interpolate else None,
                                 "secondary_id": secondary.get(s) if interpolate else None})
                members["json"] = json.dumps(meta, sort_keys=True).encode()
                if format_version >= 2:
                    members["cls"] = str(s % num_classes).encode()
                writer.write({"__key__": key, **members})
            writer.close()
        shard_ids[shard] = ids
        table = pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in MANIFEST_SCHEMA},
                         schema=MANIFEST_SCHEMA)
        pq.write_table(table, root / "manifest" / f"{shard:06d}.parquet")
        data = tar_path.read_bytes()
        stats = {"shard": shard, "tar": f"shards/{shard:06d}.tar", "tar_bytes": len(data),
                 "tar_sha256": hashlib.sha256(data).hexdigest(), "samples": len(ids),
                 "failed": sum(1 for r in rows if r["status"] == "failed")}
        marker = root / "stats" / f"{shard:06d}.json" if format_version >= 2 else root / "manifest" / f"_{shard:06d}.json"
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(json.dumps(stats))
    return FakeStore(root=root, k=k, shard_ids=shard_ids, failed_ids=[s for s, _, f in plan if f],
                     labels=labels, similarity=sims, secondary=secondary)
