"""Reads of a large store: time and peak memory of every reader, at 10 k / 400 k (/ 12.8 M) views.

    python bench/bench_scale.py                         # 10 k and 400 k views (ImageNet shape: K=10, 1,000 classes)
    python bench/bench_scale.py --full                  # also 12.8 M views (1.28 M sources, 1,282 shards; ~17 GB)
    python bench/bench_scale.py --sizes 10000 --keep    # one size, keep the stores under --dir

Each store is synthesised in the exact v2 format by genview's own writer: `ShardWriter` (tar,
manifest fragment, per-shard summary, member index, done marker) fed by the pipeline's
`sample_members` (members and manifest rows), with one tiny JPEG reused for every image, so only
the bytes of images are fake. Each store is checked with `genview verify --no-sha256` before
anything is timed. Every reader then runs in its own fresh subprocess, which reports its wall
time and its peak resident memory (`ru_maxrss`, the interpreter and imports included). The table
ends with the exponent b of peak memory ~ views^b fitted over the sizes run (b < 1: sub-linear).

Rows are functions `row(url) -> {label: seconds}` listed in ROWS ("module:function" strings);
`--row module:function` adds one (e.g. resume, planning and job-list rows of another bench file).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's genview, also in the pool's processes (not an installed one)
K = 10
SOURCES_PER_SHARD = 1000
CLASSES = 1000
FAILED_EVERY = 997  # about 0.1 % of sources fail to decode, as in a real listing


# -- synthesis ---------------------------------------------------------------------------------
def _tiny_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 90, 60)).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def _spec(source: str) -> dict:
    return {"model": "icgan", "k": K, "seed": 0, "format": "jpg", "quality": 95, "view_size": 8, "image_size": 8,
            "source": source, "source_copy": "jpg", "source_size": None, "shard_size": SOURCES_PER_SHARD,
            "best_of": 1, "alphas": None, "interpolate": False, "interpolation": "lerp", "pair_across": None,
            "recipe": None, "store_embeddings": False, "params": {"truncation": 0.8},
            "weights": {"id": "synthetic", "sha256": "0" * 64, "random_init": True, "preset": "tiny"}}


def _write_shard(args: tuple[str, int, int, int]) -> int:
    """Write one shard through the pipeline's member/row builder and the real ShardWriter."""
    import numpy as np

    from genview.datastore.shard_writer import ShardWriter
    from genview.datastore.store import Store
    from genview.pipeline.shard import ViewSettings, sample_members

    url, shard, first, count = args
    store = Store(url)
    jpeg = _tiny_jpeg()
    settings = ViewSettings(model="icgan", k=K, seed=0, source_copy="jpg")
    rng = np.random.default_rng(shard)
    similarity = np.clip(rng.normal(0.55, 0.15, size=(count, K)), -1, 1).astype(np.float32)
    with ShardWriter(store, shard) as writer:
        for i in range(count):
            sid = first + i
            label_index = sid % CLASSES
            record = {"source_id": sid, "uri": f"/data/train/n{label_index:08d}/img_{sid:08d}.JPEG",
                      "label": f"n{label_index:08d}", "label_index": label_index, "shard": shard}
            ok = sid % FAILED_EVERY != 5
            item = SimpleNamespace(record=record, ok=ok, error=None if ok else "cannot identify image file",
                                   source_member=("jpg", jpeg), secondary=None,
                                   encoded=[(jpeg, 8, 8)] * K, seeds=[sid * K + j for j in range(K)],
                                   similarity=[float(x) for x in similarity[i]])
            key, members, rows = sample_members(item, settings, {"truncation": 0.8})
            if members:
                writer.write_sample(key, members)
            writer.add_rows(rows)
        writer.commit({"sources": count, "ok": sum(1 for i in range(count) if (first + i) % FAILED_EVERY != 5),
                       "failed": sum(1 for i in range(count) if (first + i) % FAILED_EVERY == 5),
                       "views": K * sum(1 for i in range(count) if (first + i) % FAILED_EVERY != 5)})
    return shard


def synthesise(url: str, views: int, jobs: int) -> float:
    """Write a store of `views` views (views / K sources, SOURCES_PER_SHARD a shard); return the seconds it took."""
    from concurrent.futures import ProcessPoolExecutor

    import pyarrow as pa

    from genview.datastore import layout
    from genview.datastore.store import Store

    start = time.perf_counter()
    sources = views // K
    shards = math.ceil(sources / SOURCES_PER_SHARD)
    store = Store(url)
    store.clear()
    store.prepare_dirs()
    ids = pa.array(range(sources), pa.int64())
    labels = [i % CLASSES for i in range(sources)]
    store.write_sources(pa.table({
        "source_id": ids,
        "uri": pa.array([f"/data/train/n{li:08d}/img_{i:08d}.JPEG" for i, li in enumerate(labels)]),
        "label": pa.array([f"n{li:08d}" for li in labels]),
        "label_index": pa.array(labels, pa.int32()),
        "shard": pa.array([i // SOURCES_PER_SHARD for i in range(sources)], pa.int32()),
    }))
    store.write_header(_spec("/data/train"), {"num_shards": shards, "random_weights": True,
                                              "shard_pattern": layout.relative_shard_pattern(shards),
                                              "listing": {"count": sources, "sha256": "0" * 64}})
    work = [(url, s, s * SOURCES_PER_SHARD, min(SOURCES_PER_SHARD, sources - s * SOURCES_PER_SHARD)) for s in range(shards)]
    with ProcessPoolExecutor(jobs) as pool:
        list(pool.map(_write_shard, work, chunksize=4))  # results are None: this waits for every shard
    return time.perf_counter() - start


def verify(url: str) -> float:
    """`genview verify --no-sha256` (structure of every shard against its manifest); raises unless OK."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "genview.cli.main", "verify", url, "--no-sha256"],
                            env=_env(), capture_output=True, text=True)
    if result.returncode != 0 or "\nOK" not in result.stdout:
        raise SystemExit(f"verify failed for {url}:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - start


# -- rows (each runs in a fresh subprocess) -------------------------------------------------------
def row_manifest_full(url: str) -> dict[str, float]:
    """Reference: `Store.manifest()`, the whole manifest as one table (what the readers used to load)."""
    from genview.datastore.store import Store

    start = time.perf_counter()
    Store(url).manifest()
    return {"Store.manifest() (whole table, reference)": time.perf_counter() - start}


def row_inspect(url: str) -> dict[str, float]:
    from genview.datastore.inspect import format_summary, inspect_store

    start = time.perf_counter()
    format_summary(inspect_store(url))
    return {"genview inspect": time.perf_counter() - start}


def row_preview(url: str) -> dict[str, float]:
    from genview.datastore.preview import preview_grid

    start = time.perf_counter()
    preview_grid(url, rows=8, order="worst").save(io.BytesIO(), format="PNG")
    return {"genview preview (8 worst sources)": time.perf_counter() - start}


def row_browse(url: str) -> dict[str, float]:
    """The browse app's work without the socket: start-up (what its lifespan does), then pages."""
    from genview.web.browse import render_store_page, store_page_context
    from genview.web.store_view import GridQuery, StoreView

    def page(view: StoreView, params: dict[str, str]) -> float:
        start = time.perf_counter()
        context = store_page_context(view, params)
        if context["error"]:
            raise RuntimeError(context["error"])
        render_store_page(url, context)
        for source in context["grid"]["sources"][:5]:  # images of the page: one range read each
            view.image(source["shard"], source["views"][0]["member"])
        return time.perf_counter() - start

    start = time.perf_counter()
    view = StoreView(url)
    page(view, {})
    startup = time.perf_counter() - start
    labels = view.overview()["labels"]
    label = labels[len(labels) // 2]
    pages = view.grid(GridQuery())["pages"]
    return {
        "browse start-up (state + first page)": startup,
        "browse first page after start-up": page(view, {}),
        "browse grid page in the middle (new shards)": page(view, {"page": str(pages // 2)}),
        "browse sort best": page(view, {"sort": "best"}),
        "browse class filter": page(view, {"label": label}),
        "browse similarity range": page(view, {"min": "0.3", "max": "0.4", "page": "3"}),
    }


def row_client_filter(url: str) -> dict[str, float]:
    from genview.trainer_client.filters import ViewFilter, eligible_views
    from genview.trainer_client.store_index import StoreIndex

    start = time.perf_counter()
    index = StoreIndex(url)
    eligible_views(index, ViewFilter(min_similarity=0.4, exclude_labels=frozenset({"n00000003", "n00000500"})))
    return {"client: StoreIndex + filtered eligible set": time.perf_counter() - start}


def row_map_index(url: str) -> dict[str, float]:
    from genview.trainer_client.map_dataset import GenViewMapDataset

    start = time.perf_counter()
    dataset = GenViewMapDataset(url)
    dataset.raw(len(dataset) // 2)
    return {"client: map-style dataset index": time.perf_counter() - start}


ROWS = [f"{__name__ if __name__ != '__main__' else 'bench_scale'}:{name}" for name in (
    "row_manifest_full", "row_inspect", "row_preview", "row_browse", "row_client_filter", "row_map_index")]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "bench"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def measure(row: str, url: str) -> dict:
    """Run one row function in a fresh interpreter: {"times": {label: s}, "peak_mb": MB} (peak of the whole process)."""
    code = ("import importlib, json, resource, sys; m, f = sys.argv[1].split(':'); "
            "t = getattr(importlib.import_module(m), f)(sys.argv[2]); "
            "print(json.dumps({'times': t, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    result = subprocess.run([sys.executable, "-c", code, row, url], env=_env(), capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def exponent(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) on log(x)."""
    if len(xs) < 2:
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / den if den else None


def human(views: int) -> str:
    return f"{views / 1e6:g} M" if views >= 1_000_000 else f"{views / 1e3:g} k"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,400000", help="views per store, comma-separated")
    parser.add_argument("--full", action="store_true", help="also 12,811,670 views (ImageNet x K=10)")
    parser.add_argument("--dir", default="/tmp/genview-bench-scale", help="where the stores are written")
    parser.add_argument("--keep", action="store_true", help="keep the stores (a rerun reuses a verified one)")
    parser.add_argument("--jobs", type=int, default=2, help="processes writing shards")
    parser.add_argument("--row", action="append", default=[], metavar="MODULE:FUNCTION", help="an extra row function")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.full:
        sizes.append(12_811_670)
    rows = ROWS + args.row
    results: dict[int, dict[str, tuple[float, float]]] = {}
    labels: list[str] = []
    peak_by_row: dict[str, dict[int, float]] = {}
    for views in sizes:
        url = str(Path(args.dir) / f"store-{views}")
        ready = Path(url, ".bench-verified")
        if not ready.exists():
            made = synthesise(url, views, args.jobs)
            checked = verify(url)
            ready.write_text("ok\n")
            print(f"{human(views)} views: synthesised in {made:.0f} s, `genview verify --no-sha256` OK in {checked:.0f} s",
                  flush=True)
        results[views] = {}
        for row in rows:
            out = measure(row, url)
            if "error" in out:
                print(f"  {human(views)}: {row} failed: {out['error']}", flush=True)
                continue
            for label, seconds in out["times"].items():
                if label not in labels:
                    labels.append(label)
                results[views][label] = (seconds, out["peak_mb"])
                peak_by_row.setdefault(label, {})[views] = out["peak_mb"]
            print(f"  {human(views)}: {row} done", file=sys.stderr, flush=True)
        if not args.keep:
            shutil.rmtree(url, ignore_errors=True)
    head = f"{'reader':<46}" + "".join(f" {human(v) + ' views':>22}" for v in sizes) + f" {'b (peak ~ views^b)':>19}"
    print("\n" + head)
    print("-" * len(head))
    for label in labels:
        cells = []
        for views in sizes:
            seconds, peak = results[views].get(label, (math.nan, math.nan))
            cells.append(f" {f'{seconds:.2f} s, {peak:.0f} MB':>22}")
        got = [v for v in sizes if v in peak_by_row.get(label, {})]
        b = exponent([float(v) for v in got], [peak_by_row[label][v] for v in got])
        print(f"{label:<46}" + "".join(cells) + f" {'' if b is None else f'{b:.2f}':>19}")
    print("(seconds: the reader's own work after imports; MB: peak RSS of its whole process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
