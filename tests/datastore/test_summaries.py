"""Per-shard summaries and member indexes: they agree with the tar and manifest, and readers answer the same through them.

Stores here are written by genview's own ShardWriter with small fake image bytes (no model), so
every reader (inspect, preview, browse, the trainer client) can be compared between the new path,
a store stripped of its summaries (as older v2 stores are), a v1 layout, and a brute-force scan of
the whole manifest.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from genview.datastore import layout
from genview.datastore.fs import read_parquet
from genview.datastore.shard_writer import ShardWriter
from genview.datastore.store import Store
from genview.datastore.summary import index_path, summary_path
from genview.datastore.tarindex import iter_tar

K = 3
LABELS = ["cat", "dog", "émeu", None]


def _write_store(root: Path, shards: int, per_shard: int, k: int = K, seed: int = 0) -> Store:
    """A v2 store through the real writer: labelled and unlabelled sources, failures, a view without a score."""
    rng = np.random.default_rng(seed)
    store = Store(str(root))
    store.prepare_dirs()
    n = shards * per_shard
    labels = [LABELS[i % len(LABELS)] for i in range(n)]
    store.write_sources(pa.table({
        "source_id": pa.array(range(n), pa.int64()), "uri": [f"/src/{i}.png" for i in range(n)], "label": labels,
        "label_index": pa.array([None if lab is None else LABELS.index(lab) for lab in labels], pa.int32()),
        "shard": pa.array([i // per_shard for i in range(n)], pa.int32()),
    }))
    store.write_header({"model": "icgan", "k": k, "seed": 0, "source_copy": "jpg", "params": {}, "weights": {"id": "x", "sha256": "0" * 64, "preset": "tiny"}},
                       {"num_shards": shards, "random_weights": True})
    for shard in range(shards):
        with ShardWriter(store, shard) as writer:
            ok = failed = 0
            for sid in range(shard * per_shard, (shard + 1) * per_shard):
                key = layout.sample_key(sid)
                base = {"key": key, "source_id": sid, "source_uri": f"/src/{sid}.png", "label": labels[sid],
                        "label_index": None if labels[sid] is None else LABELS.index(labels[sid]), "shard": shard,
                        "model": "icgan"}
                if sid % 7 == 3:
                    writer.add_rows([{**base, "status": "failed", "error": f"broken {sid}"}])
                    failed += 1
                    continue
                members = {"src.jpg": bytes(rng.integers(0, 255, 50 + sid % 600, dtype=np.uint8)),
                           "json": json.dumps({"source_id": sid}).encode(), "cls": b"1"}
                rows = []
                for j in range(k):
                    data = bytes(rng.integers(0, 255, 30 + (sid * 7 + j) % 900, dtype=np.uint8))
                    members[f"v{j}.jpg"] = data
                    sim = None if sid % 11 == 5 and j == 1 else float(np.float32(rng.uniform(-0.2, 0.95)))
                    rows.append({**base, "view": j, "member": f"{key}.v{j}.jpg", "seed": sid * k + j, "status": "ok",
                                 "similarity": sim, "width": 8, "height": 8, "bytes": len(data)})
                writer.write_sample(key, members)
                writer.add_rows(rows)
                ok += 1
            writer.commit({"sources": per_shard, "ok": ok, "failed": failed, "views": ok * k})
    return store


def _strip_summaries(src: Path, dst: Path, v1: bool = False) -> Path:
    """A copy of a store as older genview wrote it: no summary in the markers, no summary/index files (v1: markers in manifest/)."""
    shutil.copytree(src, dst)
    for marker in sorted((dst / "stats").glob("*.json")):
        stats = json.loads(marker.read_text())
        stats.pop("summary")
        marker.write_text(json.dumps(stats))
        if v1:
            marker.rename(dst / "manifest" / f"_{marker.name}")
    for extra in list((dst / "stats").glob("*.parquet")):
        extra.unlink()
    if v1:
        header = json.loads((dst / "genview.json").read_text())
        header["format_version"] = 1
        (dst / "genview.json").write_text(json.dumps(header))
        (dst / "stats").rmdir()
    return dst


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    base = tmp_path_factory.mktemp("summaries")
    new = _write_store(base / "new", shards=3, per_shard=23)
    return {"new": Path(new.root), "old": _strip_summaries(Path(new.root), base / "old"),
            "v1": _strip_summaries(Path(new.root), base / "v1", v1=True)}


def test_index_and_summary_agree_with_tar_and_manifest(stores):
    store = Store(str(stores["new"]))
    for shard in sorted(store.done_shards()):
        tar_path = layout.shard_tar(store.root, shard)
        raw = Path(tar_path).read_bytes()
        index = read_parquet(store.fs, index_path(store.root, shard)).to_pylist()
        with open(tar_path, "rb") as fh:
            scanned = [(m.name, m.start, m.data_offset, m.size) for m in iter_tar(fh, read_data=False, seekable=True)]
        assert [(r["member"], r["header"], r["offset"], r["size"]) for r in index] == scanned
        with tarfile.open(tar_path) as tf:
            for info, row in zip(tf.getmembers(), index):
                # A range read through the index returns the member's bytes; no member carries a pax record.
                assert store.fs.cat_file(tar_path, start=row["offset"], end=row["offset"] + row["size"]) == \
                    tf.extractfile(info).read()
                assert info.pax_headers == {} and info.mtime == 0
        assert raw.count(b"mtime=") == 0

        manifest = read_parquet(store.fs, layout.shard_manifest(store.root, shard)).to_pylist()
        marker = store.read_stats(shard)
        summary = marker["summary"]
        ok = [r for r in manifest if r["status"] == "ok"]
        sims = [r["similarity"] for r in ok if r["similarity"] is not None]
        assert (summary["views"], summary["ok_sources"], summary["failed_sources"]) == (
            len(ok), len({r["source_id"] for r in ok}), sum(r["status"] == "failed" for r in manifest))
        assert summary["bytes"] == sum(r["bytes"] for r in ok)
        assert summary["similarity"]["count"] == len(sims) == sum(summary["similarity"]["hist"]["counts"])
        assert summary["similarity"]["min"] == min(sims) and summary["similarity"]["max"] == max(sims)
        brute_worst = sorted(ok, key=lambda r: (r["similarity"] is None, r["similarity"] or 0, r["source_id"], r["view"]))
        assert [(w["source_id"], w["view"]) for w in summary["worst"]] == [
            (r["source_id"], r["view"]) for r in brute_worst if r["similarity"] is not None][: len(summary["worst"])]
        assert [f["source_id"] for f in summary["failures"]] == [r["source_id"] for r in manifest if r["status"] == "failed"]
        classes = {r["label"]: r for r in read_parquet(store.fs, summary_path(store.root, shard)).to_pylist()}
        for label in {r["label"] for r in manifest}:
            rows = [r for r in ok if r["label"] == label]
            scored = [r["similarity"] for r in rows if r["similarity"] is not None]
            got = classes[label]
            assert (got["views"], got["sources"], got["failed"]) == (
                len(rows), len({r["source_id"] for r in rows}),
                sum(r["status"] == "failed" and r["label"] == label for r in manifest))
            assert got["sim_count"] == len(scored) and got["sim_sum"] == pytest.approx(sum(scored), abs=1e-9)
            if scored:
                assert (got["sim_min"], got["sim_max"]) == (min(scored), max(scored))


def _inspect_brute(url: str) -> dict:
    """What inspect must say, computed from the whole manifest in memory."""
    manifest = Store(url).manifest()
    ok = manifest.filter(pc.equal(manifest["status"], "ok"))
    sims = ok["similarity"].drop_null().to_numpy()
    out = {"views": ok.num_rows, "failed": manifest.num_rows - ok.num_rows,
           "min": round(float(sims.min()), 4), "max": round(float(sims.max()), 4), "mean": round(float(sims.mean()), 4),
           "p10": float(np.quantile(sims, 0.1)), "median": float(np.quantile(sims, 0.5))}
    labels = {}
    for row in ok.to_pylist():
        labels.setdefault(row["label"] or "(none)", []).append(row["similarity"])
    out["by_label"] = {label: (len(v), round(float(np.mean([x for x in v if x is not None])), 4)) for label, v in labels.items()}
    order = sorted((r for r in ok.to_pylist() if r["similarity"] is not None),
                   key=lambda r: (r["similarity"], r["source_id"], r["view"]))
    out["worst"] = [r["member"] for r in order[:40]]
    return out


@pytest.mark.parametrize("which", ["new", "old", "v1"])
def test_inspect_same_through_summaries_fragments_and_a_full_scan(stores, which):
    from genview.datastore.inspect import format_summary, inspect_store

    url = str(stores[which])
    brute = _inspect_brute(str(stores["new"]))
    for worst in (10, 40):  # 40 > the 32 worst a summary keeps: read from the fragments
        got = inspect_store(url, worst=worst)
        assert (got["views"], got["failed_sources"]) == (brute["views"], brute["failed"])
        sim = got["similarity"]
        assert (sim["min"], sim["max"], sim["mean"]) == (brute["min"], brute["max"], brute["mean"])
        assert sim["p10"] == pytest.approx(brute["p10"], abs=1.1e-3) and sim["median"] == pytest.approx(brute["median"], abs=1.1e-3)
        assert {r["label"]: (r["views"], r["mean"]) for r in got["similarity_by_label"] if r["views"]} == brute["by_label"]
        assert [r["member"] for r in got["worst_views"]] == brute["worst"][:worst]
        assert [f["source_id"] for f in got["failures"]] == [i for i in range(69) if i % 7 == 3][:worst]
        assert "per label" in format_summary(got)


def test_preview_same_pixels_with_and_without_summaries(stores):
    from genview.datastore.preview import preview_grid

    pictures = {}
    for which in ("new", "old", "v1"):
        for order in ("first", "worst", "best"):
            pictures[which, order] = preview_grid(str(stores[which]), rows=5, order=order, cell=16).tobytes()
        pictures[which, "label"] = preview_grid(str(stores[which]), rows=5, order="worst", label="dog", cell=16).tobytes()
    for key in ("first", "worst", "best", "label"):
        assert pictures["new", key] == pictures["old", key] == pictures["v1", key]
    assert pictures["new", "worst"] != pictures["new", "best"]


def _grid_brute(url: str, sort: str, label=None, lo=None, hi=None, page=1, per_page=10):
    """The browse grid as it was computed before: over the whole manifest table."""
    manifest = Store(url).manifest()
    table = manifest.filter(pc.equal(manifest["status"], "ok"))
    if label is not None:
        table = table.filter(pc.equal(table["label"], label))
    if lo is not None:
        table = table.filter(pc.greater_equal(table["similarity"], lo))
    if hi is not None:
        table = table.filter(pc.less_equal(table["similarity"], hi))
    per_source = table.group_by("source_id").aggregate([("similarity", "min")])
    keys = [("source_id", "ascending")] if sort == "source" else [
        ("similarity_min", "ascending" if sort == "worst" else "descending"), ("source_id", "ascending")]
    per_source = per_source.sort_by(keys)
    start = (page - 1) * per_page
    ids = per_source["source_id"].slice(start, per_page).to_pylist()
    views = {}
    for row in table.filter(pc.is_in(table["source_id"], value_set=pa.array(ids, pa.int64()))).to_pylist():
        views.setdefault(row["source_id"], []).append(row["view"])
    return per_source.num_rows, [(sid, sorted(views[sid])) for sid in ids]


@pytest.mark.parametrize("which", ["new", "old"])
def test_browse_grid_and_overview_match_a_full_scan(stores, which):
    from genview.web.store_view import GridQuery, StoreView

    url = str(stores[which])
    view = StoreView(url)
    queries = [dict(sort="worst"), dict(sort="best", page=2), dict(sort="source", page=3), dict(sort="worst", label="dog"),
               dict(sort="best", label="émeu", lo=0.1, hi=0.6), dict(sort="worst", lo=0.5), dict(sort="worst", label="nope")]
    for q in queries:
        got = view.grid(GridQuery(q["sort"], q.get("label"), q.get("lo"), q.get("hi"), q.get("page", 1), 10))
        total, expected = _grid_brute(url, q["sort"], q.get("label"), q.get("lo"), q.get("hi"), q.get("page", 1))
        assert got["total"] == total
        assert [(s["source_id"], [v["view"] for v in s["views"]]) for s in got["sources"]] == expected, q
        for s in got["sources"]:
            assert s["source_member"] == f"{s['key']}.src.jpg"
    overview = view.overview()
    assert overview["failures_total"] == 10 and len(overview["failures"]) == 10
    manifest = Store(url).manifest()
    scored = manifest.filter(pc.and_(pc.equal(manifest["status"], "ok"), pc.is_valid(manifest["similarity"])))
    assert sum(bar["count"] for bar in overview["histogram"]) == scored.num_rows
    assert overview["labels"] == ["cat", "dog", "émeu"]
    member = got["sources"][0]["views"][0]["member"] if got["sources"] else view.grid(GridQuery())["sources"][0]["views"][0]["member"]
    shard = int(member[:10]) // 23
    assert view.image(shard, member)[0] == tarfile.open(layout.shard_tar(str(stores[which]), shard)).extractfile(member).read()


def test_browse_adds_a_committed_shard_without_reloading(tmp_path):
    from genview.web.store_view import GridQuery, StoreView

    store = _write_store(tmp_path / "grow", shards=2, per_shard=10)
    marker = Path(store.marker_path(1))
    hidden = marker.read_bytes()
    marker.unlink()  # shard 1 is "being written"
    view = StoreView(store.url, max_age=0)
    before = view.grid(GridQuery(sort="source", per_page=10))["total"]
    state = view._current()
    marker.write_bytes(hidden)  # ... and now committed
    after = view.grid(GridQuery(sort="source", per_page=10))["total"]
    assert view._current() is state  # the same state, with the new shard's rows added
    assert (before, after) == (9, 17)  # sources 3 and 10 failed
    assert view.overview()["summary"]["shards"]["done"] == 2


def test_client_index_filters_and_map_index_same_with_and_without_summaries(stores):
    from genview.trainer_client.filters import ViewFilter, eligible_views
    from genview.trainer_client.map_dataset import GenViewMapDataset
    from genview.trainer_client.store_index import StoreIndex

    answers = {}
    for which in ("new", "old", "v1"):
        index = StoreIndex(str(stores[which]))
        eligible = eligible_views(index, ViewFilter(min_similarity=0.3, exclude_labels=frozenset({"cat", 1})))
        dataset = GenViewMapDataset(index)
        answers[which] = (index.shard_counts, [eligible.views(i) for i in range(69)],
                          dataset.offsets.tolist(), dataset.lengths.tolist(), dataset.raw(5).source_id)
    assert answers["new"] == answers["old"] == answers["v1"]
    manifest = Store(str(stores["new"])).manifest().to_pylist()
    expected = {}
    for r in manifest:
        if r["status"] == "ok" and r["similarity"] is not None and r["similarity"] >= 0.3 and r["label"] not in ("cat", "dog"):
            expected.setdefault(r["source_id"], []).append(r["view"])
    assert answers["new"][1] == [tuple(sorted(expected.get(i, []))) for i in range(69)]


SERVER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
from genview.cli.main import main
sys.exit(main(["browse", sys.argv[1], "--port", sys.argv[2]]))
"""


def test_browse_1100_shards_under_1024_open_files(tmp_path):
    """Every shard's images fetched from a server limited to 1,024 descriptors: bounded caches, no "Too many open files"."""
    from live_process import free_port

    shards = 1_110
    store = _write_store(tmp_path / "many", shards=shards, per_shard=1, k=1)
    port = free_port()
    log = tmp_path / "browse.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, store.url, str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        with httpx.Client(base_url=url, timeout=30) as client:
            for shard in range(shards):
                if shard % 7 == 3:
                    continue  # a failed source: the shard has no sample
                key = layout.sample_key(shard)
                response = client.get(f"/img/{shard}/{key}.v0.jpg")
                assert response.status_code == 200, (shard, response.text)
            assert client.get("/?sort=best&page=20&per_page=50").status_code == 200
        open_files = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert open_files < 200, open_files
        assert "Too many open files" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_verify_finds_a_member_index_that_disagrees_with_its_tar(tmp_path):
    from genview.datastore.summary import INDEX_SCHEMA, index_bytes
    from genview.datastore.verify import verify_store

    store = _write_store(tmp_path / "s", shards=1, per_shard=4)
    assert verify_store(store.url).ok
    index = read_parquet(store.fs, index_path(store.root, 0))
    shifted = index.set_column(2, INDEX_SCHEMA.field("offset"), pc.add(index.column("offset"), 512))
    Path(index_path(store.root, 0)).write_bytes(index_bytes(shifted))
    report = verify_store(store.url)
    assert any("member index disagrees with the tar from entry 0" in p for p in report.problems), report.problems
