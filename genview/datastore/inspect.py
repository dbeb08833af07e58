"""Inspect: what is in a store, the similarity distribution per class, and the worst views."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from genview.datastore.manifest import STATUS_FAILED, STATUS_OK
from genview.datastore.store import Store


def _quantiles(values: pa.Array) -> dict[str, float | None]:
    """Return min / p10 / median / mean / max of a float array (None when empty)."""
    if len(values) == 0:
        return {"min": None, "p10": None, "median": None, "mean": None, "max": None}
    q = pc.quantile(values, q=[0.1, 0.5]).to_pylist()
    return {
        "min": round(pc.min(values).as_py(), 4),
        "p10": round(q[0], 4),
        "median": round(q[1], 4),
        "mean": round(pc.mean(values).as_py(), 4),
        "max": round(pc.max(values).as_py(), 4),
    }


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


def inspect_store(url: str, worst: int = 10, by_label_limit: int = 50, quality_order: str | None = "fid") -> dict[str, Any]:
    """Return a JSON-able summary: spec, counts, failures, similarity per class, the `worst` views, quality per class."""
    store = Store(url)
    header = store.read_header()
    sources = store.read_sources()
    manifest = store.manifest()
    ok = manifest.filter(pc.equal(manifest["status"], STATUS_OK))
    failed = manifest.filter(pc.equal(manifest["status"], STATUS_FAILED))
    spec = header["spec"]
    shards_planned = len(set(sources.column("shard").to_pylist()))
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
        "sources": sources.num_rows,
        "shards": {"planned": shards_planned, "done": len(store.done_shards())},
        "ok_sources": len(set(ok.column("source_id").to_pylist())),
        "failed_sources": failed.num_rows,
        "views": ok.num_rows,
        "bytes": int(pc.sum(ok["bytes"]).as_py() or 0),
        "similarity": _quantiles(ok["similarity"].drop_null()),
        "failures": [
            {"source_id": r["source_id"], "uri": r["source_uri"], "error": r["error"]}
            for r in failed.select(["source_id", "source_uri", "error"]).to_pylist()[:worst]
        ],
    }
    per_label = []
    labels = ok["label"].fill_null("(none)")
    for label in sorted(set(labels.to_pylist()))[:by_label_limit]:
        sims = ok["similarity"].filter(pc.equal(labels, label)).drop_null()
        per_label.append({"label": label, "views": len(sims), **_quantiles(sims)})
    summary["similarity_by_label"] = per_label
    order = pc.sort_indices(ok, sort_keys=[("similarity", "ascending")])
    lowest = ok.take(order[:worst]).select(["key", "view", "member", "label", "similarity", "shard"]).to_pylist()
    summary["worst_views"] = lowest
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
        lines.append("per label  label                      views     mean   median      min")
        for row in summary["similarity_by_label"]:
            if row["mean"] is None:
                continue
            lines.append(f"           {row['label'][:24]:<24} {row['views']:>7} {row['mean']:>8.3f} {row['median']:>8.3f} {row['min']:>8.3f}")
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
