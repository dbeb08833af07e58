"""Operations at scale, measured side by side with the code paths they replace.

    python bench/bench_scale_ops.py                       # all three parts, ImageNet-sized
    python bench/bench_scale_ops.py --part resume --shards 1282
    python bench/bench_scale_ops.py --part plan --sources 100000 1281167
    python bench/bench_scale_ops.py --part jobs --jobs 10000 100000

resume  A 1,282-shard store in the real format (one real shard made by the tiny IC-GAN, copied to
        every shard number with its marker and manifest patched; sources.parquet of shards x
        shard-size rows; the source a list file naming them), then `genview generate` resumed on
        it with every shard done: the start-up until "nothing to run". Beside it the old start-up
        check (`quick_check_shard` per done shard: marker, size and a tar header scan) and the
        temp-file lookup per shard start (old: list shards/, manifest/, stats/; new: the shard's
        own prefix), over every shard. Then the same store sourced from a real FOLDER of as many
        image files in 1,000 class folders (hard links to one tiny jpeg per class: the rerun never
        reads them), resumed: the folder's directory mtimes checked (no listing) against the full
        re-listing it replaces (GENVIEW_RELIST_SOURCE=1), side by side.
plan    Planning N sources from a list file in a child process (peak RSS from the kernel): list,
        seeded shard order, sources.parquet; then what the driver holds to hand shards out: the
        old dict per source (`to_pylist`) against the per-shard row counts it holds now.
jobs    A SQLite job database with N finished jobs of one owner (migrations applied): first and
        last page of 100, by offset (what old clients send) and by cursor (keyset).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# -- resume ---------------------------------------------------------------------------------------
def build_store(folder: Path, shards: int, shard_size: int) -> tuple[str, str, str]:
    """A store of `shards` done shards in the real format; returns (source list file, store, weights)."""
    import pyarrow as pa

    from genview.cli.main import main as cli
    from genview.cli.models import init_random_model
    from genview.datastore import layout
    from genview.datastore.shard_rows import row_group_size
    from genview.datastore.sources import listing_digest
    from genview.datastore.source_fingerprint import list_file_fingerprint
    from genview.synthetic_data import make_image_folder

    weights = folder / "weights"
    init_random_model("icgan", "tiny", str(weights), seed=0)
    images = folder / "images"
    make_image_folder(images, classes=2, per_class=4, size=48, seed=1)
    seed_list = folder / "seed.txt"
    seed_list.write_text("".join(f"images/class_{i // 4:02d}/img_{i % 4:04d}.jpg\n" for i in range(8)))
    out = folder / "store"
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the figures only
        code = cli(["generate", str(seed_list), "--model", "icgan", "--weights", str(weights), "--out", str(out), "--k", "2",
                    "--shard-size", "8", "--device", "cpu", "--no-progress"])  # one real shard
    assert code == 0
    # Every shard number gets shard 0's tar, summary, member index, manifest (shard column patched) and
    # marker (shard patched, sealed again).
    import pyarrow.parquet as pq

    tar = out / "shards" / "000000.tar"
    manifest = pq.read_table(out / "manifest" / "000000.parquet")
    marker = json.loads((out / "stats" / "000000.json").read_text())
    for shard in range(1, shards):
        name = layout.shard_name(shard)
        os.link(tar, out / "shards" / f"{name}.tar")
        for part in ("summary", "index"):  # the per-shard summary and member index describe the same tar
            os.link(out / "stats" / f"000000.{part}.parquet", out / "stats" / f"{name}.{part}.parquet")
        column = manifest.schema.get_field_index("shard")
        pq.write_table(manifest.set_column(column, "shard", pa.array([shard] * manifest.num_rows, pa.int32())),
                       out / "manifest" / f"{name}.parquet")
    # The plan: shards x shard_size sources named by a list file (never read: every shard is done).
    total = shards * shard_size
    listing = folder / "list.txt"
    with open(listing, "w") as fh:
        for i in range(total):
            fh.write(f"images/class_{i * 2 // total:02d}/x{i:08d}.jpg\n")
    uris = [str(folder / f"images/class_{i * 2 // total:02d}/x{i:08d}.jpg") for i in range(total)]
    labels = [None] * total
    table = pa.table({"source_id": pa.array(range(total), pa.int64()), "uri": uris, "label": pa.array(labels, pa.string()),
                      "label_index": pa.array(labels, pa.int32()),
                      "shard": pa.array([i // shard_size for i in range(total)], pa.int32())})
    pq.write_table(table, out / "sources.parquet", row_group_size=row_group_size(shard_size))
    header = json.loads((out / "genview.json").read_text())
    header["spec"].update(source=str(listing), shard_size=shard_size)
    header.update(listing=listing_digest(table), num_sources=total, num_shards=shards, source_file=list_file_fingerprint(str(listing)),
                  shard_pattern=layout.relative_shard_pattern(shards))
    (out / "genview.json").write_text(json.dumps(header, indent=2, sort_keys=True))
    seal_markers(out, shards, marker)
    return str(listing), str(out), str(weights)


def seal_markers(out: Path, shards: int, marker: dict) -> None:
    """Write every shard's done marker from shard 0's, sealed as the writer seals it: the spec digest of
    genview.json as it is now, its manifest fragment's sha256 and the marker's own digest."""
    from genview.datastore import layout
    from genview.datastore.shardcheck import SPEC_DIGEST, seal_marker
    from genview.datastore.store import Store

    digest = Store(str(out)).spec_digest()
    for shard in range(shards):
        name = layout.shard_name(shard)
        fragment = (out / "manifest" / f"{name}.parquet").read_bytes()
        stats = {**marker, "shard": shard, "tar": f"shards/{name}.tar", SPEC_DIGEST: digest}
        (out / "stats" / f"{name}.json").write_text(json.dumps(seal_marker(stats, fragment)))


#: Class folders of the FOLDER source (ImageNet's 1,000).
FOLDER_CLASSES = 1000


def build_source_folder(root: Path, files: int, classes: int = FOLDER_CLASSES) -> None:
    """An ImageFolder tree of `files` real .jpg files in `classes` class folders, at rest for an hour.

    One tiny jpeg per class, hard-linked under every other name of the class (one syscall a file, no
    inode or data block each); ext4 allows 65,000 links a file, so one jpeg per class, not per tree.
    """
    from genview.synthetic_data import make_image_folder

    make_image_folder(root.parent / "seed", classes=1, per_class=1, size=32, seed=0)
    seed = root.parent / "seed" / "class_00" / "img_0000.jpg"
    root.mkdir()
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir()
        first = folder / f"n{c:08d}_{0:07d}.JPEG"
        shutil.copyfile(seed, first)
        for i in range(1, files // classes + (c < files % classes)):
            os.link(first, folder / f"n{c:08d}_{i:07d}.JPEG")
    # A dataset at rest: its directories last changed an hour ago. Written seconds before the
    # fingerprint, they would be racy (not trusted until a rerun lists again and refreshes it).
    past = time.time_ns() - 3600 * 10**9
    for folder in [root, *(p for p in root.iterdir() if p.is_dir())]:
        os.utime(folder, ns=(past, past))


def folder_sourced(out: str, source: Path, shard_size: int) -> tuple[float, float, int]:
    """Repoint the store at the folder as `generate` plans it: fingerprint, listing, sources.parquet, header.

    Returns (seconds to take the fingerprint, seconds to list the folder and digest it, directories).
    """
    from genview.datastore.fs import canonical_url
    from genview.datastore.source_fingerprint import source_fingerprint
    from genview.datastore.sources import assign_shards, scan_sources
    from genview.datastore.store import Store

    start = time.perf_counter()
    fingerprint = source_fingerprint(str(source))  # taken before the listing, as the runner does
    walk = time.perf_counter() - start
    start = time.perf_counter()
    listing = scan_sources(str(source))
    digest = listing.digest
    relist = time.perf_counter() - start
    store = Store(out)
    store.write_sources(assign_shards(listing.table, shard_size, seed=0), shard_size)
    header = store.read_header()
    header["spec"]["source"] = canonical_url(str(source))
    header.update(listing=digest, skipped_files={"count": 0, "first": []}, **fingerprint)
    Path(out, "genview.json").write_text(json.dumps(header, indent=2, sort_keys=True))
    seal_markers(Path(out), store.num_shards(), json.loads(Path(out, "stats", "000000.json").read_text()))
    return walk, relist, len(fingerprint["source_folder"]["directories"])


def bench_resume_folder(folder: Path, out: str, weights: str, shards: int, shard_size: int) -> None:
    """The store resumed with a FOLDER source: directory mtimes checked vs the folder listed again."""
    from genview.datastore.source_fingerprint import source_unchanged
    from genview.datastore.store import Store
    from genview.pipeline.runner import RELIST_SOURCE_ENV, generate
    from genview.pipeline.spec import GenerateSpec

    source = folder / "imagenet"
    start = time.perf_counter()
    build_source_folder(source, shards * shard_size)
    built = time.perf_counter() - start
    walk, relist, directories = folder_sourced(out, source, shard_size)
    print(f"resume: built a source folder of {shards * shard_size:,} .JPEG files in {FOLDER_CLASSES:,} class folders "
          f"in {built:.0f} s; its fingerprint ({directories:,} directories' mtimes, taken before each listing) in {walk:.2f} s")
    spec = GenerateSpec(source=str(source), out=out, model="icgan", weights=weights, k=2, shard_size=shard_size,
                        device="cpu")
    recorded = Store(out).read_header()["source_folder"]
    start = time.perf_counter()
    assert source_unchanged(str(source), Store(out).read_header())
    check = time.perf_counter() - start
    start = time.perf_counter()
    summary = generate(spec, progress=False)
    new = time.perf_counter() - start
    assert summary.shards_run == 0 and summary.shards == shards, summary
    assert Store(out).read_header()["source_folder"] == recorded  # not listed (a listing refreshes it)
    os.environ[RELIST_SOURCE_ENV] = "1"
    try:
        start = time.perf_counter()
        summary = generate(spec, progress=False)
        old = time.perf_counter() - start
    finally:
        del os.environ[RELIST_SOURCE_ENV]
    assert summary.shards_run == 0 and Store(out).read_header()["source_folder"]["taken_ns"] > recorded["taken_ns"]
    print(f"resume: folder source, listing it again and its digest: {relist:.1f} s; the fingerprint check instead "
          f"({directories:,} stats): {check:.3f} s")
    print(f"resume: folder source, `genview generate` start-up to 'nothing to run' on {shards} done shards: "
          f"new (directory mtimes unchanged, not listed) {new:.1f} s; old (listed again and digested, "
          f"{RELIST_SOURCE_ENV}=1) {old:.1f} s; ratio {old / max(new, 1e-9):.0f}x (model load included in both)")


def bench_resume(shards: int, shard_size: int) -> None:
    from genview.datastore.sources import scan_sources
    from genview.datastore.store import Store
    from genview.datastore.verify import quick_check_shard
    from genview.pipeline.runner import generate, trusted_done_shards
    from genview.pipeline.spec import GenerateSpec

    folder = Path(tempfile.mkdtemp(prefix="bench-scale-ops-"))
    try:
        start = time.perf_counter()
        listing, out, weights = build_store(folder, shards, shard_size)
        print(f"resume: built a {shards}-shard store ({shards * shard_size:,} sources) in {time.perf_counter() - start:.0f} s")
        spec = GenerateSpec(source=listing, out=out, model="icgan", weights=weights, k=2, shard_size=shard_size,
                            device="cpu")
        start = time.perf_counter()
        summary = generate(spec, progress=False)
        resume = time.perf_counter() - start
        assert summary.shards_run == 0 and summary.shards == shards, summary
        start = time.perf_counter()
        digest = scan_sources(listing).digest  # what a rerun costs when the list file changed
        relist = time.perf_counter() - start
        assert digest == Store(out).read_header()["listing"]
        store = Store(out)
        planned = set(range(shards))
        start = time.perf_counter()
        kept = trusted_done_shards(store, planned)
        trusted = time.perf_counter() - start
        start = time.perf_counter()
        old = [shard for shard in sorted(planned) if not quick_check_shard(store, shard)]
        old_check = time.perf_counter() - start
        assert len(kept) == len(old) == shards
        start = time.perf_counter()
        for shard in range(shards):
            store.leftovers(shard)
        old_lookup = time.perf_counter() - start
        start = time.perf_counter()
        for shard in range(shards):
            store.shard_leftovers(shard)
        new_lookup = time.perf_counter() - start
        print(f"resume: `genview generate` start-up to 'nothing to run' on {shards} done shards: {resume:.1f} s "
              "(model load included; the list file's bytes unchanged, so it is not listed again)")
        print(f"resume: listing the list file again and its digest (when its bytes changed): {relist:.1f} s")
        print(f"resume: done-shard check, new (marker size, one listing): {trusted:.2f} s; old (quick_check_shard, "
              f"tar header scan per shard): {old_check:.2f} s; ratio {old_check / max(trusted, 1e-9):.0f}x "
              f"(the copied shard has {summary.views // shards} views; real shards of 1,000 sources x 10 views scan "
              "~1,000x more headers)")
        print(f"resume: temp-file lookup at every shard start, summed over {shards} shards: new (own prefix) "
              f"{new_lookup:.2f} s; old (whole folders) {old_lookup:.2f} s; ratio {old_lookup / max(new_lookup, 1e-9):.0f}x")
        bench_resume_folder(folder, out, weights, shards, shard_size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- plan -----------------------------------------------------------------------------------------
PLAN_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from genview.pipeline.runner import _plan
from genview.pipeline.spec import GenerateSpec
from genview.datastore.store import Store
spec = GenerateSpec(source=sys.argv[2], out=sys.argv[3], model="icgan", weights="unused", shard_size=1000)
start = time.perf_counter()
sources, facts = _plan(spec)
Store(spec.out).prepare_dirs()
Store(spec.out).write_sources(sources, spec.shard_size)
planned = time.perf_counter() - start
def peak_mb():
    # VmHWM is this process's own peak (ru_maxrss would include the parent's, kept across exec).
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024
rss_plan = peak_mb()
del sources
store = Store(spec.out)
start = time.perf_counter()
counts = np.bincount(store.read_sources_columns(["shard"]).column("shard").to_numpy())
new_hold = counts.nbytes
new_seconds = time.perf_counter() - start
import tracemalloc
tracemalloc.start()
start = time.perf_counter()
records = store.read_sources().to_pylist()
old_seconds = time.perf_counter() - start
old_hold = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
from genview.datastore.shard_rows import shard_records
start = time.perf_counter()
rows = shard_records(spec.out, len(counts) // 2)
read_one = time.perf_counter() - start
print(json.dumps({"plan_s": planned, "rss_mb": rss_plan, "shards": int(len(counts)), "old_hold": old_hold,
                  "new_hold": int(new_hold), "old_s": old_seconds, "new_s": new_seconds, "one_shard_s": read_one,
                  "one_shard_rows": len(rows)}))
"""


def bench_plan(sizes: list[int]) -> None:
    for count in sizes:
        folder = Path(tempfile.mkdtemp(prefix="bench-plan-"))
        try:
            listing = folder / "list.txt"
            with open(listing, "w") as fh:
                for i in range(count):
                    fh.write(f"n{i % 1000:08d}/img_{i:09d}.JPEG\n")
            run = subprocess.run([sys.executable, "-c", PLAN_CHILD, str(ROOT), str(listing), str(folder / "store")],
                                 capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if run.returncode:
                raise RuntimeError(run.stderr)
            r = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"plan: {count:,} sources -> {r['shards']} shards: planned in {r['plan_s']:.1f} s, peak RSS "
                  f"{r['rss_mb']:.0f} MB; driver holds per-shard counts {r['new_hold'] / 1e3:.1f} kB "
                  f"(read in {r['new_s']:.2f} s) instead of a dict per source {r['old_hold'] / 1e6:.0f} MB "
                  f"({r['old_s']:.1f} s); a worker reads one shard's {r['one_shard_rows']} rows in {r['one_shard_s']:.2f} s")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


# -- jobs -----------------------------------------------------------------------------------------
def bench_jobs(sizes: list[int], page: int = 100, repeats: int = 5) -> None:
    from genview.api import service
    import sqlalchemy as sa

    from genview.api.db import Job, init_db, make_engine, make_sessionmaker
    from genview.api.job_rows import add_finished_jobs
    from genview.api.settings import Principal

    alice = Principal(name="alice", source_roots=[], output_roots=[], max_jobs_in_flight=1)
    for count in sizes:
        folder = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
        try:
            engine = make_engine(f"sqlite:///{folder / 'jobs.sqlite'}")
            init_db(engine)
            add_finished_jobs(engine, "alice", count)
            sessions = make_sessionmaker(engine)

            def best(fn) -> float:
                times = []
                for _ in range(repeats):
                    with sessions() as session:
                        start = time.perf_counter()
                        fn(session)
                        times.append(time.perf_counter() - start)
                return min(times) * 1000

            with sessions() as session:  # the cursor of the page before the last
                oldest = service.list_jobs(session, alice, None, page, offset=count - page - 1)[0][0]
            after = (oldest.created_at, oldest.public_id)
            first = best(lambda s: service.list_jobs(s, alice, None, page))
            last_offset = best(lambda s: service.list_jobs(s, alice, None, page, offset=count - page))
            last_cursor = best(lambda s: service.list_jobs(s, alice, None, page, after=after))
            # The query as it was: offset pages ordered by (created_at, id), no composite index.
            with engine.begin() as connection:
                connection.execute(sa.text("DROP INDEX ix_genview_jobs_owner_created_id"))
            old = best(lambda s: s.scalars(sa.select(Job).where(Job.owner == "alice")
                                           .order_by(Job.created_at.desc(), Job.id).limit(page).offset(count - page)).all())
            print(f"jobs: {count:,} jobs (SQLite, page of {page}, best of {repeats}): first page {first:.1f} ms; "
                  f"last page by cursor {last_cursor:.1f} ms, by offset {last_offset:.1f} ms; "
                  f"without the index of migration 0003 (offset, ordered by created_at, id) {old:.1f} ms")
            engine.dispose()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["resume", "plan", "jobs", "all"], default="all")
    parser.add_argument("--shards", type=int, default=1282, help="resume: done shards in the store")
    parser.add_argument("--shard-size", type=int, default=1000, help="resume: sources per shard in the plan")
    parser.add_argument("--sources", type=int, nargs="+", default=[100_000, 1_281_167], help="plan: listing sizes")
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000, 100_000], help="jobs: database sizes")
    args = parser.parse_args()
    if args.part in ("resume", "all"):
        bench_resume(args.shards, args.shard_size)
    if args.part in ("plan", "all"):
        bench_plan(args.sources)
    if args.part in ("jobs", "all"):
        bench_jobs(args.jobs)


if __name__ == "__main__":
    main()
