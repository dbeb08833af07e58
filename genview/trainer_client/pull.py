"""Copy a (remote) store to local disk and verify each shard against its manifest (`genview pull`)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import pyarrow.parquet as pq

from genview.trainer_client.store_index import (
    MANIFEST_DIR,
    SHARDS_DIR,
    SOURCES_FILE,
    SPEC_FILE,
    STATUS_OK,
    StoreFormatError,
    StoreIndex,
    open_store_fs,
    shard_name,
)
from genview.trainer_client.tarscan import TarFormatError, iter_tar

_CHUNK = 1 << 20


class StoreVerificationError(RuntimeError):
    """Raised when pulled shards disagree with their manifest; lists every problem found."""


@dataclass
class PullReport:
    """What `pull_store` did."""

    src: str
    dest: str
    shards_copied: list[int] = field(default_factory=list)
    shards_skipped: list[int] = field(default_factory=list)  # already complete at dest
    bytes_copied: int = 0
    verified: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return asdict(self)


def _copy(src_fs, src_path: str, dest_fs, dest_path: str) -> tuple[int, str]:
    """Stream one file to a hidden temp name, then move it into place; return (bytes, sha256)."""
    head, tail = posixpath.split(dest_path)
    tmp = posixpath.join(head, f".{tail}.{uuid.uuid4().hex[:12]}.tmp")
    digest, size = hashlib.sha256(), 0
    try:
        with src_fs.open(src_path, "rb") as reader, dest_fs.open(tmp, "wb") as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                size += len(chunk)
        if "file" in (dest_fs.protocol if isinstance(dest_fs.protocol, tuple) else (dest_fs.protocol,)):
            os.replace(tmp, dest_path)
        else:
            dest_fs.mv(tmp, dest_path)
    finally:
        if dest_fs.exists(tmp):
            dest_fs.rm(tmp)
    return size, digest.hexdigest()


def verify_shard(fs, tar_path: str, manifest_path: str, shard: int, k: int) -> list[str]:
    """Return the problems of one shard: tar members vs its manifest fragment (empty list: fine)."""
    name = shard_name(shard)
    with fs.open(manifest_path, "rb") as fh:
        manifest = pq.read_table(fh, columns=["key", "status", "member", "bytes"]).to_pylist()
    ok_keys = {row["key"] for row in manifest if row["status"] == STATUS_OK}
    failed_keys = {row["key"] for row in manifest if row["status"] != STATUS_OK}
    expected = {row["member"]: row["bytes"] for row in manifest if row["status"] == STATUS_OK and row["member"]}
    members: dict[str, dict[str, int]] = defaultdict(dict)
    problems: list[str] = []
    try:
        with fs.open(tar_path, "rb") as fh:
            for member in iter_tar(fh, read_data=False, seekable=True):
                key, _, ext = posixpath.basename(member.name).partition(".")
                members[key][ext] = member.size
    except (TarFormatError, OSError, EOFError) as exc:
        return [f"shard {name}: tar unreadable: {exc}"]
    if set(members) != ok_keys:
        extra, missing = sorted(set(members) - ok_keys), sorted(ok_keys - set(members))
        if extra:
            problems.append(f"shard {name}: tar has samples the manifest does not list as ok: {extra[:5]}")
        if missing:
            problems.append(f"shard {name}: manifest lists ok samples missing from the tar: {missing[:5]}")
    if failed_keys & set(members):
        problems.append(f"shard {name}: failed sources have tar samples: {sorted(failed_keys & set(members))[:5]}")
    for key, exts in members.items():
        if "json" not in exts or not any(e.startswith("src.") for e in exts):
            problems.append(f"shard {name}: sample {key} lacks its json or src member")
        views = [e for e in exts if e.split(".", 1)[0].startswith("v") and e.split(".", 1)[0][1:].isdigit()]
        if len(views) != k:
            problems.append(f"shard {name}: sample {key} has {len(views)} views, the store's k is {k}")
    for member, size in expected.items():
        key, _, ext = member.partition(".")
        if ext not in members.get(key, {}):
            problems.append(f"shard {name}: member {member} listed in the manifest is missing")
        elif size is not None and members[key][ext] != size:
            problems.append(f"shard {name}: member {member} has {members[key][ext]} bytes, manifest says {size}")
    return problems


def pull_store(
    src: str,
    dest: str,
    verify: bool = True,
    *,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PullReport:
    """Copy the complete shards of store `src` (local or s3://...) to `dest`, verifying them.

    Per shard, the tar and manifest fragment are copied first and the done marker last, so an
    interrupted pull leaves a valid store of the shards it finished; rerunning skips shards whose
    marker and tar size already match. With ``verify`` the tar's sha256/size are checked against
    the marker (when it records them) and its members against the manifest (every ok sample with
    json, src and k views, member sizes as listed, no sample for a failed source). A shard that
    fails gets no marker at dest, and StoreVerificationError lists all problems at the end.
    ``progress(done, total)`` is called after each shard.
    """
    index = StoreIndex(src, storage_options)
    dest_fs, dest_root = open_store_fs(dest)
    report = PullReport(src=index.url, dest=str(dest), verified=verify)
    for sub in (SHARDS_DIR, MANIFEST_DIR, "stats"):
        dest_fs.makedirs(posixpath.join(dest_root, sub), exist_ok=True)

    dest_spec = posixpath.join(dest_root, SPEC_FILE)
    src_spec_bytes = index.fs.cat_file(index.path(SPEC_FILE))
    if dest_fs.exists(dest_spec) and json.loads(dest_fs.cat_file(dest_spec)) != json.loads(src_spec_bytes):
        raise StoreFormatError(
            f"{dest_spec} exists and describes a different store than {index.url}; pull into an empty folder"
        )
    for name in (SPEC_FILE, SOURCES_FILE):
        report.bytes_copied += _copy(index.fs, index.path(name), dest_fs, posixpath.join(dest_root, name))[0]

    problems: list[str] = []
    for done, entry in enumerate(index.shards, start=1):
        stem = shard_name(entry.shard)
        dest_tar = posixpath.join(dest_root, SHARDS_DIR, stem + ".tar")
        dest_manifest = posixpath.join(dest_root, MANIFEST_DIR, stem + ".parquet")
        # The marker keeps its folder (stats/ in v2, manifest/ in v1) relative to the store root.
        dest_done = posixpath.join(dest_root, posixpath.relpath(entry.done_path, index.root))
        if dest_fs.exists(dest_done) and dest_fs.exists(dest_tar) and dest_fs.size(dest_tar) == index.fs.size(entry.path):
            report.shards_skipped.append(entry.shard)
        else:
            if dest_fs.exists(dest_done):
                dest_fs.rm(dest_done)  # a stale marker must not vouch for the files being replaced
            size, sha = _copy(index.fs, entry.path, dest_fs, dest_tar)
            report.bytes_copied += size
            report.bytes_copied += _copy(index.fs, index.manifest_path(entry.shard), dest_fs, dest_manifest)[0]
            stats_bytes = index.fs.cat_file(index.done_path(entry.shard))
            shard_problems: list[str] = []
            if verify:
                stats = json.loads(stats_bytes)
                if stats.get("tar_bytes") is not None and int(stats["tar_bytes"]) != size:
                    shard_problems.append(f"shard {stem}: tar is {size} bytes, its marker says {stats['tar_bytes']}")
                if stats.get("tar_sha256") and stats["tar_sha256"] != sha:
                    shard_problems.append(f"shard {stem}: tar sha256 {sha} differs from its marker's {stats['tar_sha256']}")
                shard_problems += verify_shard(dest_fs, dest_tar, dest_manifest, entry.shard, index.k)
            if shard_problems:
                problems += shard_problems
            else:
                # The done marker, written last (atomically), vouches for the shard at dest.
                report.bytes_copied += _copy(index.fs, index.done_path(entry.shard), dest_fs, dest_done)[0]
                report.shards_copied.append(entry.shard)
        if progress is not None:
            progress(done, len(index.shards))
    if problems:
        raise StoreVerificationError(
            f"pull of {index.url} to {dest}: {len(problems)} problem(s); those shards have no done marker at dest:\n  "
            + "\n  ".join(problems)
        )
    return report
