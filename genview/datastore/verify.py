"""Verify a store: every shard readable, members and counts agree with the manifest and the plan."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Callable

from genview.datastore import layout
from genview.datastore.fs import is_local
from genview.datastore.shardcheck import check_shard
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
    if not (check_hashes or is_local(store.fs)):
        return []  # header scans cost a request per member on object stores
    spec = store.spec
    return check_shard(store.fs, store.root, shard, k=int(spec["k"]), stats=stats, sha256=check_hashes,
                       require_source=spec.get("source_copy") != "none").problems


def verify_store(url: str, decode: bool = False, require_complete: bool = True, sha256: bool = True,
                 on_shard: Callable[[int], None] | None = None) -> VerifyReport:
    """Check a whole store; `decode=True` also decodes every view; `sha256=False` skips the tar digests (faster).

    `on_shard(shard)` is called as each planned shard has been looked at (progress of a long verify).
    """
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
    previous = None
    for shard in sorted(planned):
        if on_shard is not None and previous is not None:
            on_shard(previous)  # reported as the next one starts: the loop body `continue`s on some problems
        previous = shard
        if shard in done:
            try:
                stats = store.read_stats(shard)
            except (StoreError, OSError, ValueError) as exc:
                report.problems.append(f"shard {layout.shard_name(shard)}: done marker unreadable: {exc}")
                continue
            check = check_shard(store.fs, store.root, shard, k=k, stats=stats, planned_ids=planned[shard],
                                sha256=sha256, decode=decode, require_source=spec.get("source_copy") != "none")
            report.problems += check.problems
            if check.problems:
                report.damaged.append(shard)
            report.ok_sources += check.ok_sources
            report.failed_sources += check.failed_sources
            report.views += check.views
        else:
            if require_complete:
                report.problems.append(f"shard {layout.shard_name(shard)} is not done (rerun the generate command to finish it)")
            if store.fs.exists(layout.shard_tar(store.root, shard)):
                report.problems.append(f"shard {layout.shard_name(shard)}: tar present without a done marker")
    if on_shard is not None and previous is not None:
        on_shard(previous)
    leftovers = store.leftovers()
    for path in leftovers:
        report.problems.append(f"temporary file left by an interrupted write: {path}")
    if leftovers:
        report.problems.append(
            "temporary files are left by a write that was killed; rerunning the generate command (or "
            "`genview verify --repair`) removes them, or delete them by hand: nothing reads them"
        )
    return report
