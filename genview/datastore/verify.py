"""Verify a store: every shard readable, members and counts agree with the manifest and the plan."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from collections import Counter, defaultdict

import pyarrow.parquet as pq

from genview.datastore import layout
from genview.datastore.manifest import MANIFEST_SCHEMA, STATUS_FAILED, STATUS_OK
from genview.datastore.fs import is_local
from genview.datastore.store import Store, StoreError

#: Read size for hashing and scanning tars.
_CHUNK = 1 << 20


def _count_members(fs, path: str) -> int:
    """Count a tar's members from their headers only (seeking past the data: cheap on local disk)."""
    with fs.open(path, "rb") as fh:
        with tarfile.open(fileobj=fh, mode="r:") as tar:
            return sum(1 for _ in tar)


def _sha256(fs, path: str) -> str:
    """Return the sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def quick_check_shard(store: Store, shard: int, check_hashes: bool = False) -> list[str]:
    """Cheap checks of a done shard against its marker: tar and manifest present, tar size, member count.

    Run on every done shard before a rerun trusts it (size is one stat per shard; the member
    count reads only tar headers, on local disk); `check_hashes` also compares the tar's sha256.
    Returns the problems found (empty: the shard looks whole).
    """
    fs, root = store.fs, store.root
    name = layout.shard_name(shard)
    tar_path = layout.shard_tar(root, shard)
    try:
        stats = store.read_stats(shard)
    except (OSError, ValueError) as exc:
        return [f"shard {name}: done marker unreadable: {exc}"]
    if not fs.exists(layout.shard_manifest(root, shard)):
        return [f"shard {name}: manifest fragment missing"]
    if not fs.exists(tar_path):
        return [f"shard {name}: tar missing"]
    size = fs.size(tar_path)
    if "tar_bytes" in stats and size != stats["tar_bytes"]:
        return [f"shard {name}: tar is {size} bytes, its done marker says {stats['tar_bytes']}"]
    if "tar_members" in stats and is_local(fs):
        try:
            members = _count_members(fs, tar_path)
        except (OSError, tarfile.TarError, EOFError) as exc:
            return [f"shard {name}: tar unreadable: {exc}"]
        if members != stats["tar_members"]:
            return [f"shard {name}: tar has {members} members, its done marker says {stats['tar_members']}"]
    if check_hashes and "tar_sha256" in stats:
        digest = _sha256(fs, tar_path)
        if digest != stats["tar_sha256"]:
            return [f"shard {name}: tar sha256 {digest[:12]}… differs from its done marker's {stats['tar_sha256'][:12]}…"]
    return []


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


def _check_shard(store: Store, shard: int, planned_ids: list[int], k: int, decode: bool, report: VerifyReport) -> None:
    """Check one done shard's tar, manifest fragment and stats against each other and the plan."""
    fs, root = store.fs, store.root
    name = layout.shard_name(shard)
    tar_path = layout.shard_tar(root, shard)
    problems = report.problems
    try:
        with fs.open(layout.shard_manifest(root, shard), "rb") as fh:
            manifest = pq.read_table(fh)
    except (OSError, ValueError) as exc:
        problems.append(f"shard {name}: manifest fragment unreadable: {exc}")
        return
    if manifest.schema.names != MANIFEST_SCHEMA.names:
        problems.append(f"shard {name}: manifest columns {manifest.schema.names} differ from the format")
        return
    members: dict[str, int] = {}
    try:
        stats = store.read_stats(shard)
    except (OSError, ValueError) as exc:
        problems.append(f"shard {name}: done marker unreadable: {exc}")
        return
    try:
        with fs.open(tar_path, "rb") as raw:
            fh = _HashingReader(raw)
            with tarfile.open(fileobj=fh, mode="r|") as tar:
                for info in tar:
                    data = tar.extractfile(info).read() if info.isfile() else b""
                    if info.name in members:
                        problems.append(f"shard {name}: member {info.name} appears twice")
                    members[info.name] = len(data)
                    if decode and info.name.rsplit(".", 1)[-1] in ("jpg", "webp", "png") and ".v" in info.name:
                        _check_decodes(info.name, data, name, problems)
            fh.drain()  # the tar's end-of-archive padding counts towards its hash and size too
    except (OSError, tarfile.TarError, EOFError) as exc:
        problems.append(f"shard {name}: tar unreadable: {exc}")
        return
    # The marker holds the tar's sha256 and size: a flipped byte inside a view is caught here
    # even where the image still decodes.
    if "tar_sha256" in stats and fh.sha256.hexdigest() != stats["tar_sha256"]:
        problems.append(f"shard {name}: tar sha256 differs from its done marker (the tar was changed or damaged)")
    if "tar_bytes" in stats and fh.size != stats["tar_bytes"]:
        problems.append(f"shard {name}: tar is {fh.size} bytes, its done marker says {stats['tar_bytes']}")
    rows = manifest.to_pylist()
    ok_views: dict[int, list[int]] = defaultdict(list)
    failed_ids = set()
    for row in rows:
        if row["shard"] != shard:
            problems.append(f"shard {name}: manifest row for {row['key']} says shard {row['shard']}")
        if row["status"] == STATUS_FAILED:
            failed_ids.add(row["source_id"])
            continue
        if row["status"] != STATUS_OK:
            problems.append(f"shard {name}: unknown status {row['status']!r} for {row['key']}")
            continue
        ok_views[row["source_id"]].append(row["view"])
        size = members.get(row["member"])
        if size is None:
            problems.append(f"shard {name}: manifest names {row['member']} but the tar has no such member")
        elif size != row["bytes"]:
            problems.append(f"shard {name}: {row['member']} is {size} bytes, manifest says {row['bytes']}")
    keys_in_tar = Counter(member.split(".", 1)[0] for member in members)
    for source_id, views in ok_views.items():
        if sorted(views) != list(range(k)):
            problems.append(f"shard {name}: source {source_id} has views {sorted(views)}, expected 0..{k - 1}")
        if layout.sample_key(source_id) not in keys_in_tar:
            problems.append(f"shard {name}: source {source_id} has manifest rows but no sample in the tar")
    for key in keys_in_tar:
        if not key.isdigit() or len(key) != layout.KEY_WIDTH or int(key) not in ok_views:
            problems.append(f"shard {name}: tar sample {key!r} has no ok rows in the manifest")
    both = failed_ids & set(ok_views)
    if both:
        problems.append(f"shard {name}: sources {sorted(both)[:5]} are both failed and ok")
    seen = failed_ids | set(ok_views)
    missing = sorted(set(planned_ids) - seen)
    extra = sorted(seen - set(planned_ids))
    if missing:
        problems.append(f"shard {name}: {len(missing)} planned source(s) absent from the manifest, e.g. {missing[:5]}")
    if extra:
        problems.append(f"shard {name}: {len(extra)} source(s) not planned for this shard, e.g. {extra[:5]}")
    n_views = sum(len(v) for v in ok_views.values())
    for field, actual in (("ok", len(ok_views)), ("failed", len(failed_ids)), ("views", n_views)):
        if stats.get(field) != actual:
            problems.append(f"shard {name}: stats say {field}={stats.get(field)}, manifest has {actual}")
    report.ok_sources += len(ok_views)
    report.failed_sources += len(failed_ids)
    report.views += n_views


class _HashingReader:
    """File-object wrapper that hashes and counts every byte read through it."""

    def __init__(self, fh):
        self.fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read (and hash) whatever the tar reader left unread at the end."""
        while self.read(_CHUNK):
            continue


def _check_decodes(member: str, data: bytes, shard_name: str, problems: list[str]) -> None:
    """Record a problem if a view's bytes do not decode as an image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception as exc:  # any decoder failure is a broken view
        problems.append(f"shard {shard_name}: {member} does not decode: {exc}")


def verify_store(url: str, decode: bool = False, require_complete: bool = True) -> VerifyReport:
    """Check a whole store; `decode=True` also decodes every view (slower)."""
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
            before = len(report.problems)
            _check_shard(store, shard, planned[shard], k, decode, report)
            if len(report.problems) > before:
                report.damaged.append(shard)
        else:
            if require_complete:
                report.problems.append(f"shard {layout.shard_name(shard)} is not done (rerun the generate command to finish it)")
            if store.fs.exists(layout.shard_tar(store.root, shard)):
                report.problems.append(f"shard {layout.shard_name(shard)}: tar present without a done marker")
    leftovers = store.leftovers()
    for path in leftovers:
        report.problems.append(f"temporary file left by an interrupted write: {path}")
    if leftovers:
        report.problems.append(
            "temporary files are left by a write that was killed; rerunning the generate command (or "
            "`genview verify --repair`) removes them, or delete them by hand: nothing reads them"
        )
    return report
