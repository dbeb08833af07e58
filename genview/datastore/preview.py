"""Preview: a picture of sources beside their views, optionally the least faithful first."""

from __future__ import annotations

import functools
import io
import os

import numpy as np
import pyarrow.compute as pc
from PIL import Image, ImageDraw, ImageFont, ImageOps

from genview.datastore import layout
from genview.datastore.manifest import STATUS_OK
from genview.datastore.reader import read_samples
from genview.datastore.source_views import SourceViews, manifest_dataset
from genview.datastore.store import Store


#: TrueType fonts with wide Unicode coverage, tried in order (Debian's paths); Pillow's own font last.
LABEL_FONTS = (
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)
#: A private-use code point no font draws: its glyph is the font's "missing" box.
_MISSING = "\ue000"


@functools.lru_cache(maxsize=8)
def label_font(path: str | None = None, size: int = 11) -> ImageFont.ImageFont:
    """The font labels are drawn in: `path`, else the first wide-coverage system font, else Pillow's."""
    for candidate in ([path] if path else []) + list(LABEL_FONTS):
        if candidate and os.path.exists(candidate):
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size)


def _glyph(ch: str, font: ImageFont.ImageFont) -> bytes:
    """The pixels of one character drawn in `font` (to compare against the missing-glyph box)."""
    canvas = Image.new("L", (32, 32))
    ImageDraw.Draw(canvas).text((4, 4), ch, font=font, fill=255)
    return canvas.tobytes()


def drawable_text(text: str, font: ImageFont.ImageFont) -> str:
    """Replace characters the font has no glyph for by \\uXXXX, so a label never turns into boxes."""
    missing = _glyph(_MISSING, font)
    out = []
    for ch in text:
        if ch.isascii() or ch.isspace() or _glyph(ch, font) != missing:
            out.append(ch)
        else:
            out.append(ch.encode("ascii", "backslashreplace").decode("ascii"))
    return "".join(out)


def _thumbnail(data: bytes, cell: int) -> Image.Image:
    """Decode image bytes into a cell x cell RGB thumbnail (grey cell if they do not decode)."""
    try:
        img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        return ImageOps.fit(img, (cell, cell), Image.BICUBIC)
    except Exception:  # a broken source still gets its cell, marked grey
        return Image.new("RGB", (cell, cell), (128, 128, 128))


def quality_badness(store: Store, metric: str) -> dict[int, float]:
    """Return source id -> how bad it is by a `genview quality` metric (higher = worse), for ordering."""
    from genview.quality import tables

    views = tables.read_views(store.fs, store.root)
    classes = tables.read_classes(store.fs, store.root)
    if views is None or classes is None:
        raise ValueError(f"--order {metric}: {store.url} has no quality tables; run `genview quality {store.url}` first")
    bad: dict[int, float] = {}
    if metric in ("fid", "kid", "nn_corruption"):  # per-class metrics (NN corruption: DA IC-GAN's, per class)
        by_label = {r["label"]: r[metric] for r in classes.to_pylist() if r["scope"] == "class" and r[metric] is not None}
        for row in views.select(["source_id", "label"]).to_pylist():
            bad[row["source_id"]] = by_label.get(row["label"], float("-inf"))
        return bad
    if metric not in tables.VIEW_METRICS:
        raise ValueError(
            f"--order {metric}: not a quality metric ({', '.join(('fid', 'kid', 'nn_corruption') + tables.VIEW_METRICS)})"
        )
    # Corruption: high is bad (a source as bad as its worst view); scores and diversity: low is bad.
    sign = 1.0 if metric == "view_nn_other_class" else -1.0
    for row in views.select(["source_id", metric]).to_pylist():
        if row[metric] is None or row[metric] != row[metric]:
            continue
        value = sign * row[metric]
        bad[row["source_id"]] = max(bad.get(row["source_id"], float("-inf")), value)
    return bad


#: The band across the top of a preview of views made with RANDOM weights (a `models init` preset).
RANDOM_BAND_HEIGHT = 16
RANDOM_BAND_COLOR = (200, 0, 0)
RANDOM_BAND_TEXT = "RANDOM WEIGHTS: not a trained model"


def _worst_from_summaries(store: Store, rows: int) -> dict[int, dict] | None:
    """The `rows` sources with the least similar views, from the shards' summaries alone; None when they do not tell.

    Sources ranked by their lowest view are the sources in order of first appearance in the
    store's views sorted by similarity; the summaries keep that sorted list's first 32 views. Only
    the chosen sources' other views are then read, from their own shards' fragments.
    """
    from genview.datastore.inspect import store_totals
    from genview.datastore.summary import WORST_KEPT

    totals = store_totals(store)
    chosen: dict[int, int] = {}
    for row in totals.worst(WORST_KEPT):
        chosen.setdefault(row["source_id"], row["shard"])
        if len(chosen) == rows:
            break
    if len(chosen) < rows:
        return None  # fewer distinct sources among those views: the per-source table decides
    where = (pc.field("status") == STATUS_OK) & pc.field("source_id").isin(list(chosen))
    found = manifest_dataset(store.fs, store.root, set(chosen.values())).to_table(
        columns=["source_id", "shard", "view", "similarity", "label"], filter=where)
    per_source = {sid: {"shard": shard, "label": None, "sims": {}} for sid, shard in chosen.items()}
    for row in found.to_pylist():
        entry = per_source[row["source_id"]]
        entry["label"] = row["label"]
        if row["similarity"] is not None and row["similarity"] == row["similarity"]:
            entry["sims"][row["view"]] = row["similarity"]
    return per_source


def _chosen_sources(store: Store, k: int, rows: int, order: str, label: str | None) -> dict[int, dict]:
    """The sources a preview shows, in order, from the per-source similarity table (one projected scan)."""
    table = SourceViews(store.fs, store.root, k)
    table.add_shards(store.done_shards())
    if order in ("first", "worst", "best"):
        chosen = table.page(order if order != "first" else "source", 0, rows, label=label).rows
    else:
        badness = quality_badness(store, order)
        found = table.page("source", 0, len(table.ids), label=label)
        chosen = sorted(found.rows.tolist(), key=lambda r: badness.get(int(table.ids[r]), float("-inf")), reverse=True)[:rows]
    return {
        int(table.ids[r]): {
            "shard": int(table.shard[r]),
            "label": table.labels[table.label[r]] if table.label[r] >= 0 else None,
            "sims": {j: float(v) for j, v in enumerate(table.sims[r]) if not np.isnan(v)},
        }
        for r in chosen
    }


def preview_grid(
    url: str,
    rows: int = 8,
    views: int | None = None,
    cell: int = 128,
    order: str = "first",
    label: str | None = None,
    font: str | None = None,
) -> Image.Image:
    """Return a grid image: one row per source, its original first, then its views with similarity."""
    store = Store(url)
    k = int(store.spec["k"])
    per_source = _worst_from_summaries(store, rows) if order == "worst" and label is None else None
    if per_source is None:
        per_source = _chosen_sources(store, k, rows, order, label)
    if not per_source:
        raise ValueError(f"{url} has no generated views" + (f" with label {label!r}" if label else ""))
    ids = list(per_source)
    n_views = min(views or k, k)
    wanted: dict[int, set[str]] = {}
    for sid in ids:
        wanted.setdefault(per_source[sid]["shard"], set()).add(layout.sample_key(sid))
    samples = {}
    for shard, keys in wanted.items():
        samples.update(read_samples(store, shard, keys))
    text_h = 14
    # Views of random weights must not pass for a model's: a red band says so across the top.
    band = RANDOM_BAND_HEIGHT if store.read_header().get("random_weights") else 0
    width = (n_views + 1) * cell
    grid = Image.new("RGB", (width, band + len(ids) * (cell + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    face = label_font(font)
    if band:
        draw.rectangle((0, 0, width - 1, band - 1), fill=RANDOM_BAND_COLOR)
        draw.text((3, 2), RANDOM_BAND_TEXT[: width // 6], fill=(255, 255, 255), font=face)
    for r, sid in enumerate(ids):
        members = samples[layout.sample_key(sid)]
        src = next((v for name, v in members.items() if name.startswith("src.")), b"")  # none: --source-copy none
        y = band + r * (cell + text_h)
        grid.paste(_thumbnail(src, cell), (0, y + text_h))
        caption = drawable_text(f"{sid} {per_source[sid]['label'] or ''}", face)[: cell // 6]
        draw.text((2, y), caption, fill=(0, 0, 0), font=face)
        for j in range(n_views):
            data = next(v for name, v in members.items() if name.startswith(f"v{j}."))
            grid.paste(_thumbnail(data, cell), ((j + 1) * cell, y + text_h))
            sim = per_source[sid]["sims"].get(j)
            draw.text(((j + 1) * cell + 2, y), f"v{j} sim {sim:.2f}" if sim is not None else f"v{j}", fill=(0, 0, 0),
                      font=face)
    return grid
