"""Verify a store: every shard readable, members and counts agree with the manifest and the plan."""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections import defaultdict

from genview.datastore import layout
from genview.datastore.fs import is_local
from genview.datastore.shardcheck import SPEC_DIGEST, check_shard, marker_problems
from genview.datastore.store import Store, StoreError


@dataclasses.dataclass
class VerifyReport:
    """The outcome of `verify_store`: counts, and one line per problem found."""

    shards_planned: int = 0
    shards_done: int = 0
    sources: int = 0
    ok_sources: int = 0
    failed_sources: int = 0
    views: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    damaged: list[int] = dataclasses.field(default_factory=list)  # done shards with a problem (to redo)
    leftovers: list[str] = dataclasses.field(default_factory=list)  # temp files of killed writes (to remove)
    missing: list[int] = dataclasses.field(default_factory=list)  # planned shards without a done marker

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def __str__(self) -> str:
        head = (
            f"{self.shards_done}/{self.shards_planned} shards done, {self.ok_sources} sources ok, "
            f"{self.failed_sources} failed, {self.views} views"
        )
        if self.ok:
            return head + "\nOK"
        return head + f"\n{len(self.problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in self.problems)


def quick_check_shard(store: Store, shard: int, check_hashes: bool = False) -> list[str]:
    """Cheap check of a done shard before a rerun trusts it; returns the problems (empty: looks whole).

    Always: the marker reads and the tar's size matches it (one stat). On local disk also the full
    structural check from tar headers only (members, counts, manifest); `check_hashes` adds the
    tar's sha256 (reads every byte), the only way to see a flipped byte on any filesystem.
    """
    name = layout.shard_name(shard)
    try:
        stats = store.read_stats(shard)
    except (OSError, ValueError) as exc:
        return [f"shard {name}: done marker unreadable: {exc}"]
    tar_path = layout.shard_tar(store.root, shard)
    if not store.fs.exists(tar_path):
        return [f"shard {name}: tar missing"]
    size = store.fs.size(tar_path)
    if stats.get("tar_bytes") is not None and size != int(stats["tar_bytes"]):
        return [f"shard {name}: tar is {size} bytes, its done marker says {stats['tar_bytes']}"]
    problems = spec_problems(store, shard, stats)
    if problems:
        return problems
    if not (check_hashes or is_local(store.fs)):
        # Header scans cost a request per member on object stores; the seals cost one small read.
        try:
            return marker_problems(stats, store.fs.cat_file(layout.shard_manifest(store.root, shard)), name)
        except OSError as exc:
            return [f"shard {name}: manifest fragment unreadable: {exc}"]
    spec = store.spec
    return check_shard(store.fs, store.root, shard, k=int(spec["k"]), stats=stats, sha256=check_hashes,
                       require_source=spec.get("source_copy") != "none").problems


def spec_problems(store: Store, shard: int, stats: dict) -> list[str]:
    """A done shard whose marker names another spec than genview.json's (markers without one: no check)."""
    made_by = stats.get(SPEC_DIGEST)
    if made_by and made_by != store.spec_digest():
        return [f"shard {layout.shard_name(shard)} was made with another spec than this store's genview.json "
                f"(spec digest {made_by[:12]}..., genview.json's {str(store.spec_digest())[:12]}...)"]
    return []


#: What genview itself writes in each shard folder (stats/NNNNNN.* also covers per-shard summaries and indexes).
_OWN_FILES = {
    layout.SHARDS_DIR: re.compile(r"\d{6}\.tar"),
    layout.MANIFEST_DIR: re.compile(r"\d{6}\.parquet|_\d{6}\.json"),  # _NNNNNN.json: format v1 markers
    layout.STATS_DIR: re.compile(r"\d{6}\..+"),
}


def foreign_files(store: Store) -> list[str]:
    """Return files in shards/, manifest/ or stats/ that genview did not write (temp files are leftovers, not foreign).

    Another tool's file there breaks outside readers: e.g. an index.json in manifest/ makes
    ``pandas.read_parquet(STORE/manifest)`` fail.
    """
    found = []
    for folder, own in _OWN_FILES.items():
        directory = store.path(folder)
        if not store.fs.exists(directory):
            continue
        for path in sorted(store.fs.ls(directory, detail=False)):
            base = posixpath.basename(path.rstrip("/"))
            if not own.fullmatch(base) and not (base.startswith(".") and base.endswith(".tmp")):
                found.append(f"{folder}/{base}")
    return found


def verify_store(url: str, decode: bool = False, require_complete: bool = True, sha256: bool = True) -> VerifyReport:
    """Check a whole store; `decode=True` also decodes every view; `sha256=False` skips the tar digests (faster)."""
    store = Store(url)
    report = VerifyReport()
    try:
        spec = store.spec
        sources = store.read_sources()
    except (StoreError, OSError) as exc:
        report.problems.append(str(exc))
        return report
    k = int(spec["k"])
    planned: dict[int, list[int]] = defaultdict(list)
    for source_id, shard in zip(sources.column("source_id").to_pylist(), sources.column("shard").to_pylist()):
        planned[shard].append(source_id)
    report.shards_planned = len(planned)
    report.sources = sources.num_rows
    done = store.done_shards()
    report.shards_done = len(done & set(planned))
    for shard in sorted(done - set(planned)):
        report.problems.append(f"shard {layout.shard_name(shard)} has a done marker but is not in the plan")
    for shard in sorted(planned):
        if shard in done:
            try:
                stats = store.read_stats(shard)
            except (StoreError, OSError, ValueError) as exc:
                report.problems.append(f"shard {layout.shard_name(shard)}: done marker unreadable: {exc}")
                continue
            check = check_shard(store.fs, store.root, shard, k=k, stats=stats, planned_ids=planned[shard],
                                sha256=sha256, decode=decode, require_source=spec.get("source_copy") != "none")
            check.problems += spec_problems(store, shard, stats)
            report.problems += check.problems
            if check.problems:
                report.damaged.append(shard)
            report.ok_sources += check.ok_sources
            report.failed_sources += check.failed_sources
            report.views += check.views
        else:
            report.missing.append(shard)
            if require_complete:
                report.problems.append(f"shard {layout.shard_name(shard)} is not done (rerun the generate command to finish it)")
            if store.fs.exists(layout.shard_tar(store.root, shard)):
                report.problems.append(f"shard {layout.shard_name(shard)}: tar present without a done marker")
    report.problems += [f"foreign file {path}: not written by genview (move it out of the store)" for path in foreign_files(store)]
    leftovers = store.leftovers()
    for path in leftovers:
        report.problems.append(f"temporary file left by an interrupted write: {path}")
    if leftovers:
        report.leftovers = list(leftovers)
        report.problems.append(
            f"temporary files are left by a write that was killed: `genview verify {url} --repair` removes "
            "them (without regenerating anything when no shard is damaged or missing), or delete them by "
            "hand: nothing reads them"
        )
    return report
