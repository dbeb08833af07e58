"""A store's totals added up from its shards' summaries: counts, classes, histogram, worst views, failures.

Reading a summary costs one small file per shard (its done marker) plus one small per-class table,
whatever the number of views. A shard without a summary (older stores) is summarised from its
manifest fragment, one shard at a time, by the writer's own function: same answers, bounded memory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from genview.datastore import layout
from genview.datastore.fs import arrow_filesystem, join, read_parquet
from genview.datastore.manifest import MANIFEST_SCHEMA, STATUS_FAILED
from genview.datastore.summary import (
    CLASSES_SCHEMA,
    FAILURES_KEPT,
    HIST_BINS,
    has_summary,
    WORST_KEPT,
    histogram_quantile,
    summarize_fragment,
    unpack_histogram,
)

_SUMMARY_COLUMNS = ("key", "source_id", "source_uri", "label", "label_index", "shard", "view", "member", "status",
                    "error", "similarity", "bytes")


def read_markers(fs, paths: dict[int, str]) -> dict[int, dict[str, Any]]:
    """{shard: parsed done marker} for {shard: marker path}; `fs.cat` fetches many at once on object stores."""
    if not paths:
        return {}
    blobs = fs.cat(list(paths.values()))
    by_path = {path: shard for shard, path in paths.items()}
    out = {}
    for path, data in blobs.items():
        shard = by_path.get(path)
        if shard is None:  # fsspec may hand paths back without a protocol prefix: match by tail
            shard = next(s for p, s in by_path.items() if p.endswith(path) or path.endswith(p))
        try:
            out[shard] = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"{path}: done marker is not valid JSON ({exc})") from None
    return out


def read_fragment(fs, root: str, shard: int, columns: Iterable[str] = _SUMMARY_COLUMNS) -> pa.Table:
    """A shard's manifest fragment with the given columns (a column the fragment lacks comes back null)."""
    table = read_parquet(fs, layout.shard_manifest(root, shard))
    columns = list(columns)
    out = {}
    for name in columns:
        if name in table.schema.names:
            out[name] = table.column(name).cast(MANIFEST_SCHEMA.field(name).type)
        else:
            out[name] = pa.nulls(table.num_rows, MANIFEST_SCHEMA.field(name).type)
    return pa.table(out)


@dataclass
class ShardSummary:
    """One done shard's summary (the marker's `summary` object)."""

    shard: int
    summary: dict[str, Any]
    stored: bool  # False: computed from the manifest fragment (the shard had none)


def load_summaries(fs, root: str, markers: dict[int, dict[str, Any]]) -> tuple[list[ShardSummary], Iterator[pa.Table]]:
    """Summaries of the given done shards ({shard: marker}) in shard order, and their per-class rows as a stream of tables.

    The per-class files of all shards are read in one dataset scan, batch by batch; a shard
    without a summary is summarised from its manifest fragment.
    """
    stored = {s: m["summary"] for s, m in markers.items() if has_summary(m)}
    out, computed = [], []
    for shard in sorted(markers):
        if shard in stored:
            out.append(ShardSummary(shard, stored[shard], True))
        else:
            summary, classes = summarize_fragment(read_fragment(fs, root, shard), shard)
            out.append(ShardSummary(shard, summary, False))
            computed.append(classes)

    def classes() -> Iterator[pa.Table]:
        yield from computed
        if stored:
            paths = [join(root, stored[s]["classes"]) for s in sorted(stored)]
            dataset = pads.dataset(paths, format="parquet", filesystem=arrow_filesystem(fs), schema=CLASSES_SCHEMA)
            for batch in dataset.to_batches(batch_size=1 << 16):
                yield pa.Table.from_batches([batch], schema=CLASSES_SCHEMA)

    return out, classes()


class StoreTotals:
    """Totals over any number of shard summaries; shards are added as they are committed."""

    def __init__(self) -> None:
        self.shards: set[int] = set()
        self.views = self.ok_sources = self.failed_sources = self.bytes = 0
        self.sim_count = 0
        self.sim_sum = 0.0
        self.sim_min: float | None = None
        self.sim_max: float | None = None
        self.hist = np.zeros(HIST_BINS, dtype=np.int64)
        self.worst_views: list[dict[str, Any]] = []
        self.failed_by_shard: dict[int, int] = {}
        self.failures_by_shard: dict[int, list[dict[str, Any]]] = {}
        self._classes: pa.Table = CLASSES_SCHEMA.empty_table()
        self._class_parts: list[pa.Table] = []
        self.all_summaries_stored = True

    def add(self, item: ShardSummary) -> None:
        """Add one shard's summary (a shard already added is ignored)."""
        if item.shard in self.shards:
            return
        s = item.summary
        self.shards.add(item.shard)
        self.all_summaries_stored &= item.stored
        self.views += s["views"]
        self.ok_sources += s["ok_sources"]
        self.failed_sources += s["failed_sources"]
        self.bytes += s["bytes"]
        sim = s["similarity"]
        self.sim_count += sim["count"]
        self.sim_sum += sim["sum"]
        for name, pick in (("sim_min", min), ("sim_max", max)):
            value = sim[name[4:]]
            if value is not None:
                current = getattr(self, name)
                setattr(self, name, value if current is None else pick(current, value))
        self.hist += unpack_histogram(sim["hist"])
        self.worst_views = sorted(self.worst_views + s["worst"], key=_worst_key)[:WORST_KEPT]
        if s["failed_sources"]:
            self.failed_by_shard[item.shard] = s["failed_sources"]
            self.failures_by_shard[item.shard] = s["failures"]

    def add_classes(self, classes: pa.Table) -> None:
        """Add per-class rows (CLASSES_SCHEMA) of shards added with `add` (added up as they come: memory stays per class)."""
        self._class_parts.append(classes)
        if sum(part.num_rows for part in self._class_parts) > 1 << 18:
            self.classes()

    def add_shards(self, fs, root: str, markers: dict[int, dict[str, Any]]) -> None:
        """Add the done shards of {shard: marker} not added yet."""
        new = {s: m for s, m in markers.items() if s not in self.shards}
        if not new:
            return
        summaries, classes = load_summaries(fs, root, new)
        for item in summaries:
            self.add(item)
        for table in classes:
            self.add_classes(table)

    # -- answers ----------------------------------------------------------------------------
    def similarity(self) -> dict[str, float | None]:
        """min / p10 / median / mean / max of every ok view's similarity (p10 and median from the 0.001 bins)."""
        if not self.sim_count:
            return {"min": None, "p10": None, "median": None, "mean": None, "max": None}
        return {
            "min": round(self.sim_min, 4),
            "p10": round(histogram_quantile(self.hist, 0.1, self.sim_min, self.sim_max), 4),
            "median": round(histogram_quantile(self.hist, 0.5, self.sim_min, self.sim_max), 4),
            "mean": round(self.sim_sum / self.sim_count, 4),
            "max": round(self.sim_max, 4),
        }

    def classes(self) -> pa.Table:
        """One row per class over all shards added (CLASSES_SCHEMA), sorted by label."""
        if self._class_parts:
            table = pa.concat_tables([self._classes, *self._class_parts])
            self._class_parts = []
            grouped = table.group_by("label").aggregate([
                ("label_index", "min"), ("views", "sum"), ("sources", "sum"), ("failed", "sum"), ("bytes", "sum"),
                ("sim_count", "sum"), ("sim_sum", "sum"), ("sim_sumsq", "sum"), ("sim_min", "min"), ("sim_max", "max"),
            ])
            self._classes = pa.table(
                {"label": grouped.column("label"),
                 **{name: grouped.column(f"{name}_{'min' if name in ('label_index', 'sim_min') else 'max' if name == 'sim_max' else 'sum'}")
                    for name in CLASSES_SCHEMA.names[1:]}}
            ).cast(CLASSES_SCHEMA).sort_by([("label", "ascending")])
        return self._classes

    def by_label(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Per-class rows for display: label (None as "(none)"), views, sources, failed, mean, std, min, max."""
        rows = []
        table = self.classes()
        for row in (table.slice(0, limit) if limit else table).to_pylist():
            n = row["sim_count"]
            mean = row["sim_sum"] / n if n else None
            std = math.sqrt(max(row["sim_sumsq"] / n - mean * mean, 0.0)) if n else None
            rows.append({
                "label": row["label"] if row["label"] is not None else "(none)", "views": row["views"],
                "sources": row["sources"], "failed": row["failed"],
                "mean": _round(mean), "std": _round(std), "min": _round(row["sim_min"]), "max": _round(row["sim_max"]),
            })
        return rows

    def labels(self) -> list[str]:
        """Every class label with views or failures (None left out), sorted."""
        return [label for label in self.classes().column("label").to_pylist() if label is not None]

    def worst(self, n: int) -> list[dict[str, Any]]:
        """The n lowest-similarity views (n <= WORST_KEPT; ties by source id, view)."""
        if n > WORST_KEPT:
            raise ValueError(f"summaries keep the {WORST_KEPT} worst views per shard; {n} asked")
        return self.worst_views[:n]

    def failures(self, fs, root: str, n: int) -> list[dict[str, Any]]:
        """The first n failed sources in shard order; only shards with failures are read, and only past their summary."""
        out: list[dict[str, Any]] = []
        for shard in sorted(self.failed_by_shard):
            if len(out) >= n:
                break
            listed = self.failures_by_shard.get(shard, [])
            if len(listed) < min(self.failed_by_shard[shard], n - len(out)) and len(listed) >= FAILURES_KEPT:
                fragment = read_fragment(fs, root, shard, ("source_id", "source_uri", "label", "error", "status"))
                failed = fragment.filter(pc.equal(fragment.column("status"), STATUS_FAILED))
                listed = failed.select(["source_id", "source_uri", "label", "error"]).to_pylist()
            out.extend(listed[: n - len(out)])
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _worst_key(row: dict[str, Any]) -> tuple:
    return (row["similarity"], row["source_id"], row["view"])


def worst_views_scan(fs, root: str, shards: Iterable[int], n: int) -> list[dict[str, Any]]:
    """The n lowest-similarity views, for n beyond what summaries keep: each fragment read once, n kept at a time."""
    kept: list[dict[str, Any]] = []
    for shard in shards:
        fragment = read_fragment(fs, root, shard, ("key", "source_id", "view", "member", "label", "similarity", "shard", "status"))
        ok = fragment.filter(pc.and_(pc.equal(fragment.column("status"), "ok"), pc.invert(pc.is_nan(fragment.column("similarity")))))
        ok = ok.filter(pc.is_valid(ok.column("similarity")))
        order = pc.sort_indices(ok, sort_keys=[("similarity", "ascending"), ("source_id", "ascending"), ("view", "ascending")])
        rows = ok.take(order[:n]).select(["key", "source_id", "view", "member", "label", "similarity", "shard"]).to_pylist()
        kept = sorted(kept + rows, key=_worst_key)[:n]
    return kept
