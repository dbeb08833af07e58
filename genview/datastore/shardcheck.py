"""The one per-shard check of genview (torch-free): a shard's tar against its manifest fragment and done marker.

`genview verify` runs it on every done shard of a store, `genview pull` on each shard it copied
before writing the shard's marker at the destination, and any other tool may call it.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from genview.datastore import layout
from genview.datastore.fs import read_parquet
from genview.datastore.manifest import STATUS_FAILED, STATUS_OK
from genview.datastore.tarindex import TarFormatError, iter_tar, split_member

#: Manifest columns the check reads; fragments may have more (newer formats add columns).
REQUIRED_COLUMNS = ("key", "source_id", "shard", "view", "member", "status", "bytes")
_IMAGE_EXTENSIONS = ("jpg", "jpeg", "webp", "png")


@dataclass
class ShardCheck:
    """What `check_shard` found: one line per problem (empty: the shard is sound) and the shard's counts."""

    shard: int
    problems: list[str] = field(default_factory=list)
    ok_sources: int = 0
    failed_sources: int = 0
    views: int = 0

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


class _HashingReader(io.RawIOBase):
    """A read-only stream that feeds every byte it returns to a sha256, so the tar is read once."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.digest, self.size = stream, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read the rest (the end-of-archive blocks), so the digest covers the whole file."""
        while self.read(1 << 20):
            continue


def _is_view(suffix: str) -> bool:
    head = suffix.split(".", 1)[0]
    return head.startswith("v") and head[1:].isdigit()


def check_shard(
    fs: fsspec.AbstractFileSystem,
    root: str,
    shard: int,
    *,
    k: int,
    stats: dict[str, Any] | None = None,
    planned_ids: Iterable[int] | None = None,
    sha256: bool = False,
    decode: bool = False,
    require_source: bool = True,
) -> ShardCheck:
    """Check one shard of the store at `root`: its tar against its manifest fragment and done marker.

    Checked: the tar reads to its end (header checksums, no truncation) with no member twice; every
    ok manifest row's member is in the tar with the listed byte size; each ok source has views
    0..k-1 and a sample with its json (and ``src.*`` when ``require_source``), no other sample is in
    the tar and no failed source has one; the marker's tar size (and sha256 with ``sha256=True``)
    and counts agree; with ``planned_ids`` the fragment accounts for exactly those sources; with
    ``decode`` every view decodes. ``stats`` is the done marker's content (read from the store when
    None). Returns a ShardCheck; it never raises for a damaged shard.
    """
    name = layout.shard_name(shard)
    result = ShardCheck(shard)
    problems = result.problems
    if stats is None:
        from genview.datastore.store import find_done_marker

        marker = find_done_marker(fs, root, shard)
        if marker is None:
            problems.append(f"shard {name}: no done marker")
            return result
        try:
            stats = _load_marker(fs.cat_file(marker))
        except (OSError, ValueError) as exc:
            problems.append(f"shard {name}: done marker {marker} unreadable: {exc}")
            return result
    try:
        fragment = fs.cat_file(layout.shard_manifest(root, shard))
        manifest = pq.read_table(pa.BufferReader(fragment), use_threads=False, pre_buffer=False)
    except (OSError, ValueError) as exc:
        problems.append(f"shard {name}: manifest fragment unreadable: {exc}")
        return result
    problems += marker_problems(stats, fragment, name)
    missing_columns = [c for c in REQUIRED_COLUMNS if c not in manifest.schema.names]
    if missing_columns:
        problems.append(f"shard {name}: manifest fragment lacks column(s) {', '.join(missing_columns)}")
        return result

    members: dict[str, int] = {}
    placed: list[tuple[str, int, int, int]] = []  # (name, header, data offset, size): what the member index must say
    samples: dict[str, set[str]] = defaultdict(set)
    tar_path = layout.shard_tar(root, shard)
    try:
        with fs.open(tar_path, "rb") as raw:
            stream: BinaryIO = _HashingReader(raw) if sha256 else raw
            # Hashing needs every byte read in order; otherwise headers only, seeking over data.
            for member in iter_tar(stream, read_data=decode, seekable=not sha256):
                if member.name in members:
                    problems.append(f"shard {name}: member {member.name} appears twice")
                members[member.name] = member.size
                placed.append((member.name, member.start, member.data_offset, member.size))
                key, suffix = split_member(member.name)
                samples[key].add(suffix)
                if decode and _is_view(suffix) and suffix.rsplit(".", 1)[-1].lower() in _IMAGE_EXTENSIONS:
                    _check_decodes(member.name, member.data or b"", name, problems)
            if sha256:
                stream.drain()
            tar_size = stream.size if sha256 else fs.size(tar_path)
    except (OSError, EOFError, TarFormatError) as exc:
        problems.append(f"shard {name}: tar unreadable: {exc}")
        return result

    if stats.get("tar_bytes") is not None and int(stats["tar_bytes"]) != tar_size:
        problems.append(f"shard {name}: tar is {tar_size} bytes, its done marker says {stats['tar_bytes']}")
    if stats.get("tar_members") is not None and int(stats["tar_members"]) != len(members):
        problems.append(f"shard {name}: tar has {len(members)} members, its done marker says {stats['tar_members']}")
    if sha256 and stats.get("tar_sha256") and stats["tar_sha256"] != stream.digest.hexdigest():
        problems.append(f"shard {name}: tar sha256 {stream.digest.hexdigest()} differs from its done marker's "
                        f"{stats['tar_sha256']}")

    _check_member_index(fs, root, shard, stats, placed, problems)

    ok_views: dict[int, list[int]] = defaultdict(list)
    ok_keys: dict[int, str] = {}
    failed_ids: set[int] = set()
    for row in manifest.select(list(REQUIRED_COLUMNS)).to_pylist():
        if row["shard"] != shard:
            problems.append(f"shard {name}: manifest row for {row['key']} says shard {row['shard']}")
        if row["status"] == STATUS_FAILED:
            failed_ids.add(row["source_id"])
            continue
        if row["status"] != STATUS_OK:
            problems.append(f"shard {name}: unknown status {row['status']!r} for {row['key']}")
            continue
        ok_views[row["source_id"]].append(row["view"])
        ok_keys[row["source_id"]] = row["key"]
        size = members.get(row["member"])
        if size is None:
            problems.append(f"shard {name}: manifest names {row['member']} but the tar has no such member")
        elif row["bytes"] is not None and size != row["bytes"]:
            problems.append(f"shard {name}: {row['member']} is {size} bytes, manifest says {row['bytes']}")

    for source_id, views in ok_views.items():
        if sorted(views) != list(range(k)):
            problems.append(f"shard {name}: source {source_id} has views {sorted(views)}, expected 0..{k - 1}")
        suffixes = samples.get(ok_keys[source_id])
        if suffixes is None:
            problems.append(f"shard {name}: source {source_id} has manifest rows but no sample in the tar")
            continue
        lacking = [m for m, need in (("json", True), ("src.*", require_source)) if need and not any(
            s == m or (m.endswith("*") and s.startswith(m[:-1])) for s in suffixes)]
        if lacking:
            problems.append(f"shard {name}: sample {ok_keys[source_id]} lacks its {' and '.join(lacking)} member")
        tar_views = sum(1 for s in suffixes if _is_view(s))
        if tar_views != k:
            problems.append(f"shard {name}: sample {ok_keys[source_id]} has {tar_views} views, the store's k is {k}")
    known_keys = set(ok_keys.values())
    stray = [key for key in samples if key not in known_keys]
    if stray:
        problems.append(f"shard {name}: tar sample(s) {stray[:5]} have no ok rows in the manifest")
    both = failed_ids & set(ok_views)
    if both:
        problems.append(f"shard {name}: sources {sorted(both)[:5]} are both failed and ok")
    if planned_ids is not None:
        planned, seen = set(planned_ids), failed_ids | set(ok_views)
        missing, extra = sorted(planned - seen), sorted(seen - planned)
        if missing:
            problems.append(f"shard {name}: {len(missing)} planned source(s) absent from the manifest, e.g. {missing[:5]}")
        if extra:
            problems.append(f"shard {name}: {len(extra)} source(s) not planned for this shard, e.g. {extra[:5]}")

    result.ok_sources, result.failed_sources = len(ok_views), len(failed_ids)
    result.views = sum(len(v) for v in ok_views.values())
    # Counts the marker records (genview's writer writes ok/failed/views; other writers may not).
    for key, actual in (("ok", result.ok_sources), ("failed", result.failed_sources), ("views", result.views)):
        if key in stats and stats[key] != actual:
            problems.append(f"shard {name}: done marker says {key}={stats[key]}, manifest has {actual}")
    return result


#: Marker fields that seal the shard beyond its tar: the manifest fragment's bytes and the marker itself.
MANIFEST_SHA256 = "manifest_sha256"
MARKER_SHA256 = "marker_sha256"
SPEC_DIGEST = "spec_digest"


def marker_digest(stats: dict[str, Any]) -> str:
    """sha256 of a done marker's content without its own digest field (as it reads back from JSON)."""
    body = {key: value for key, value in stats.items() if key != MARKER_SHA256}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal_marker(stats: dict[str, Any], fragment: bytes) -> dict[str, Any]:
    """Add the fragment's sha256 and the marker's own digest to a done marker about to be written."""
    sealed = json.loads(json.dumps({**stats, MANIFEST_SHA256: hashlib.sha256(fragment).hexdigest()}))
    sealed[MARKER_SHA256] = marker_digest(sealed)
    return sealed


def marker_problems(stats: dict[str, Any], fragment: bytes, name: str) -> list[str]:
    """What a done marker's seals say (markers written before the seals have none: nothing to check).

    An edited value in the manifest fragment changes its sha256; an edited marker field (its tar
    sha256, a count) no longer matches the marker's own digest. Both are cheap: no tar byte is read.
    """
    problems = []
    if stats.get(MARKER_SHA256) and stats[MARKER_SHA256] != marker_digest(stats):
        problems.append(f"shard {name}: done marker was edited (its content does not match its {MARKER_SHA256})")
    expected = stats.get(MANIFEST_SHA256)
    if expected and expected != hashlib.sha256(fragment).hexdigest():
        problems.append(f"shard {name}: manifest fragment was changed since the shard was committed "
                        f"(sha256 {hashlib.sha256(fragment).hexdigest()}, its done marker says {expected})")
    return problems


def _check_member_index(fs, root: str, shard: int, stats: dict[str, Any], placed: list[tuple[str, int, int, int]],
                        problems: list[str]) -> None:
    """Readers place members by the shard's member index (when the marker vouches for one): it must match the tar."""
    from genview.datastore.summary import has_summary, index_path

    if not has_summary(stats):
        return
    name = layout.shard_name(shard)
    try:
        index = read_parquet(fs, index_path(root, shard), columns=["member", "header", "offset", "size"])
    except (OSError, ValueError) as exc:
        problems.append(f"shard {name}: member index unreadable: {exc}")
        return
    listed = list(zip(*(index.column(c).to_pylist() for c in ("member", "header", "offset", "size"))))
    if listed != placed:
        first = next((i for i, (a, b) in enumerate(zip(listed, placed)) if a != b), min(len(listed), len(placed)))
        problems.append(f"shard {name}: member index disagrees with the tar from entry {first} "
                        f"({len(listed)} entries, {len(placed)} members)")


def _load_marker(data: bytes) -> dict[str, Any]:
    """Parse a done marker; ValueError when it is not a JSON object."""
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _check_decodes(member: str, data: bytes, shard_name: str, problems: list[str]) -> None:
    """Record a problem if a view's bytes do not decode as an image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception as exc:  # any decoder failure is a broken view
        problems.append(f"shard {shard_name}: {member} does not decode: {exc}")
