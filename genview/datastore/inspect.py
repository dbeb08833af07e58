"""Inspect: what is in a store, the similarity distribution per class, and the worst views."""

from __future__ import annotations

import json
from typing import Any

import pyarrow.compute as pc

from genview.datastore import layout
from genview.datastore.fs import read_parquet
from genview.datastore.store import Store, list_done_markers
from genview.datastore.store_summary import StoreTotals, read_markers, worst_views_scan
from genview.datastore.summary import WORST_KEPT


def quality_summary(store: Store, order: str | None = None, limit: int | None = None) -> dict[str, Any] | None:
    """Return the store's quality results (`genview quality`): networks, overall and per-class rows; None if unmeasured."""
    from genview.quality import tables

    settings = tables.read_settings(store.fs, store.root)
    classes = tables.read_classes(store.fs, store.root)
    if settings is None or classes is None:
        return None
    rows = tables.class_rows(classes, order=order)
    overall = next((r for r in classes.to_pylist() if r["scope"] == "all"), None)
    return {
        "networks": settings.get("networks"),
        "k_nn": settings.get("k_nn"),
        "fid_views": settings.get("fid_views"),
        "complete": settings.get("complete"),
        "order": order,
        "overall": overall,
        "classes": rows[:limit] if limit else rows,
    }


def _fmt(value: Any, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if isinstance(value, (int, float)) and value == value else f"{'-':>{width}}"


def format_quality_table(rows: list[dict[str, Any]], order: str | None = None) -> str:
    """Render per-class quality rows (classes.parquet rows) as a terminal table, worst first by `order`."""
    from genview.quality import tables

    classes = [r for r in rows if r["scope"] == "class"]
    overall = [r for r in rows if r["scope"] == "all"]
    if order:
        import pyarrow as pa

        classes = tables.class_rows(pa.Table.from_pylist(classes, schema=tables.CLASSES_SCHEMA), order=order)
    lines = [f"{'label':<24} {'sources':>7} {'views':>6} {'FID':>8} {'KID':>8} {'NNcorr':>7} {'indep':>7} {'divers':>7} {'sim':>7}"]
    for row in classes + [dict(r, label="(all)") for r in overall]:
        lines.append(
            f"{str(row['label'])[:24]:<24} {row['sources']:>7} {row['views']:>6} {_fmt(row['fid'], 8, 2)} {_fmt(row['kid'], 8, 4)} "
            f"{_fmt(row['nn_corruption'], 7, 3)} {_fmt(row['independent'], 7, 3)} {_fmt(row['diversity'], 7, 3)} "
            f"{_fmt(row['similarity'], 7, 3)}"
        )
    return "\n".join(lines)


def store_totals(store: Store) -> StoreTotals:
    """The totals of a store's done shards, from their summaries (or their fragments where a shard has none)."""
    totals = StoreTotals()
    totals.add_shards(store.fs, store.root, read_markers(store.fs, list_done_markers(store.fs, store.root)))
    return totals


def planned_counts(store: Store) -> tuple[int, int]:
    """(sources, planned shards) from sources.parquet's shard column alone."""
    shards = read_parquet(store.fs, store.path(layout.SOURCES_FILE), columns=["shard"]).column("shard")
    return len(shards), (pc.count_distinct(shards).as_py() if len(shards) else 0)


def inspect_store(url: str, worst: int = 10, by_label_limit: int = 50, quality_order: str | None = "fid",
                  totals: StoreTotals | None = None) -> dict[str, Any]:
    """Return a JSON-able summary: spec, counts, failures, similarity per class, the `worst` views, quality per class.

    Everything comes from the shards' summaries (`genview.datastore.summary`): the cost grows with
    the number of shards and classes, not views. `totals` reuses summaries already added up.
    """
    store = Store(url)
    header = store.read_header()
    sources, shards_planned = planned_counts(store)
    totals = totals if totals is not None else store_totals(store)
    spec = header["spec"]
    summary: dict[str, Any] = {
        "store": url,
        "format_version": header["format_version"],
        "genview_version": header.get("genview_version"),
        "model": spec["model"],
        "weights": spec.get("weights"),
        "random_weights": bool(header.get("random_weights")),
        "k": spec["k"],
        "seed": spec["seed"],
        "params": spec.get("params"),
        "source_copy": spec.get("source_copy"),
        "source_formats": header.get("source_formats"),  # --source-copy original: sources per file format
        "sources": sources,
        "shards": {"planned": shards_planned, "done": len(totals.shards)},
        "ok_sources": totals.ok_sources,
        "failed_sources": totals.failed_sources,
        "views": totals.views,
        "bytes": totals.bytes,
        "similarity": totals.similarity(),
        "failures": [
            {"source_id": r["source_id"], "uri": r["source_uri"], "error": r["error"]}
            for r in totals.failures(store.fs, store.root, worst)
        ],
        "similarity_by_label": totals.by_label(by_label_limit),
    }
    lowest = totals.worst(worst) if worst <= WORST_KEPT else worst_views_scan(store.fs, store.root, sorted(totals.shards), worst)
    summary["worst_views"] = [{k: row[k] for k in ("key", "view", "member", "label", "similarity", "shard")} for row in lowest]
    summary["quality"] = quality_summary(store, order=quality_order, limit=by_label_limit)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """Render `inspect_store` output for a terminal."""
    lines = [f"store      {summary['store']} (format v{summary['format_version']}, genview {summary['genview_version']})"]
    weights = summary.get("weights") or {}
    lines.append(f"model      {summary['model']}  weights {weights.get('id')}  sha256 {str(weights.get('sha256'))[:12]}")
    if summary["random_weights"]:
        lines.append("           WARNING: RANDOM weights (a `models init` preset): views are not from a trained model")
    lines.append(f"params     {json.dumps(summary['params'], sort_keys=True)}  k={summary['k']} seed={summary['seed']}")
    if len(summary.get("source_formats") or {}) > 1:
        from genview.pipeline.source_copy import mixed_formats_message

        lines.append(f"sources    WARNING: {mixed_formats_message(summary['source_formats'])}")
    shards = summary["shards"]
    lines.append(
        f"contents   {summary['sources']} sources in {shards['planned']} shards ({shards['done']} done): "
        f"{summary['ok_sources']} ok, {summary['failed_sources']} failed, {summary['views']} views, "
        f"{summary['bytes'] / 1e6:.1f} MB of views"
    )
    sim = summary["similarity"]
    if sim["mean"] is not None:
        lines.append(
            f"similarity min {sim['min']:.3f}  p10 {sim['p10']:.3f}  median {sim['median']:.3f}  "
            f"mean {sim['mean']:.3f}  max {sim['max']:.3f}"
        )
    if summary["similarity_by_label"]:
        lines.append("per label  label                      views     mean      std      min      max")
        for row in summary["similarity_by_label"]:
            if row["mean"] is None:
                continue
            lines.append(f"           {row['label'][:24]:<24} {row['views']:>7} {row['mean']:>8.3f} {row['std']:>8.3f} "
                         f"{row['min']:>8.3f} {row['max']:>8.3f}")
    if summary["worst_views"]:
        lines.append("worst views (lowest similarity):")
        for row in summary["worst_views"]:
            lines.append(f"           {row['member']:<28} label={row['label']} similarity={row['similarity']:.3f}")
    quality = summary.get("quality")
    if quality:
        lines.append(f"quality    per class (genview quality: k_nn={quality['k_nn']}, FID on {quality['fid_views']} view(s) per "
                     f"source{'' if quality['complete'] else ', store not complete'}; worst first by {quality['order'] or 'label'})")
        lines.extend("           " + line for line in format_quality_table(quality["classes"] + ([quality["overall"]] if quality["overall"] else [])).splitlines())
        random = [name for name, info in (quality["networks"] or {}).items() if info and info.get("random_init")]
        if random:
            lines.append(f"           WARNING: RANDOM weights in the quality networks: {', '.join(random)}")
    if summary["failures"]:
        lines.append("failed sources:")
        for row in summary["failures"]:
            lines.append(f"           {row['uri']}: {row['error']}")
    return "\n".join(lines)
