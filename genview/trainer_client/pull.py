"""Copy a (remote) store to local disk and verify each shard against its manifest (`genview pull`)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from genview.datastore.layout import QUALITY_DIR, STATS_DIR
from genview.datastore.summary import has_summary
from genview.datastore.shardcheck import check_shard
from genview.trainer_client.store_index import (
    MANIFEST_DIR,
    SHARDS_DIR,
    SOURCES_FILE,
    SPEC_FILE,
    StoreFormatError,
    StoreIndex,
    open_store_fs,
    shard_name,
)

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
    quality_files: list[str] = field(default_factory=list)  # quality/ files copied (relative paths)
    bytes_copied: int = 0
    verified: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form."""
        return asdict(self)


def _copy(src_fs, src_path: str, dest_fs, dest_path: str, digest: "hashlib._Hash | None" = None) -> int:
    """Stream one file to a hidden temp name, then move it into place; return its size in bytes (`digest` sees the bytes)."""
    head, tail = posixpath.split(dest_path)
    tmp = posixpath.join(head, f".{tail}.{uuid.uuid4().hex[:12]}.tmp")
    size = 0
    try:
        with src_fs.open(src_path, "rb") as reader, dest_fs.open(tmp, "wb") as writer:
            while chunk := reader.read(_CHUNK):
                writer.write(chunk)
                size += len(chunk)
                if digest is not None:
                    digest.update(chunk)
        if "file" in (dest_fs.protocol if isinstance(dest_fs.protocol, tuple) else (dest_fs.protocol,)):
            os.replace(tmp, dest_path)
        else:
            dest_fs.mv(tmp, dest_path)
    finally:
        if dest_fs.exists(tmp):
            dest_fs.rm(tmp)
    return size


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
    the marker (when it records them) and its members against the manifest with
    ``genview.datastore.shardcheck.check_shard`` (the check `genview verify` runs). A shard that
    fails gets no marker at dest, and StoreVerificationError lists all problems at the end.
    The store's ``quality/`` results (``genview quality``) are copied after the shards, each file
    checked against the source's bytes (sha256) and read back (``_pull_quality``).
    ``progress(done, total)`` is called after each shard.
    """
    index = StoreIndex(src, storage_options)
    dest_fs, dest_root = open_store_fs(dest)
    report = PullReport(src=index.url, dest=str(dest), verified=verify)
    for sub in (SHARDS_DIR, MANIFEST_DIR, STATS_DIR):
        dest_fs.makedirs(posixpath.join(dest_root, sub), exist_ok=True)

    dest_spec = posixpath.join(dest_root, SPEC_FILE)
    src_spec_bytes = index.fs.cat_file(index.path(SPEC_FILE))
    if dest_fs.exists(dest_spec) and json.loads(dest_fs.cat_file(dest_spec)) != json.loads(src_spec_bytes):
        raise StoreFormatError(
            f"{dest_spec} exists and describes a different store than {index.url}; pull into an empty folder"
        )
    for name in (SPEC_FILE, SOURCES_FILE):
        report.bytes_copied += _copy(index.fs, index.path(name), dest_fs, posixpath.join(dest_root, name))

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
            size = _copy(index.fs, entry.path, dest_fs, dest_tar)
            report.bytes_copied += size
            report.bytes_copied += _copy(index.fs, index.manifest_path(entry.shard), dest_fs, dest_manifest)
            stats_bytes = index.fs.cat_file(index.done_path(entry.shard))
            summary = json.loads(stats_bytes).get("summary")
            if has_summary(json.loads(stats_bytes)):  # the per-class summary and member index the marker names
                for name in (summary["classes"], summary["member_index"]):
                    report.bytes_copied += _copy(index.fs, index.path(name), dest_fs, posixpath.join(dest_root, name))
            shard_problems: list[str] = []
            if verify:
                check = check_shard(dest_fs, dest_root, entry.shard, k=index.k, stats=json.loads(stats_bytes),
                                    sha256=True, require_source=index.has_source)
                shard_problems += check.problems
            if shard_problems:
                problems += shard_problems
            else:
                # The done marker, written last (atomically), vouches for the shard at dest.
                report.bytes_copied += _copy(index.fs, index.done_path(entry.shard), dest_fs, dest_done)
                report.shards_copied.append(entry.shard)
        if progress is not None:
            progress(done, len(index.shards))
    problems += _pull_quality(index, dest_fs, dest_root, report, verify)
    if problems:
        raise StoreVerificationError(
            f"pull of {index.url} to {dest}: {len(problems)} problem(s); those shards have no done marker at dest "
            "and those quality files were not kept:\n  "
            + "\n  ".join(problems)
        )
    return report


def _file_sha256(fs, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _quality_problem(fs, root: str, relative: str) -> str | None:
    """Return why a copied quality table/setting does not read back, None when it does."""
    from genview.quality import tables

    readers = {tables.SETTINGS_FILE: tables.read_settings, tables.CLASSES_FILE: tables.read_classes,
               tables.VIEWS_FILE: tables.read_views}
    name = posixpath.relpath(relative, QUALITY_DIR)
    try:
        if name in readers:
            readers[name](fs, root)
        elif relative.endswith(".json"):
            json.loads(fs.cat_file(posixpath.join(root, relative)))
    except (OSError, ValueError) as exc:  # ValueError covers JSON and parquet (ArrowInvalid) errors
        return f"{relative} does not read back: {exc}"
    return None


def _pull_quality(index: StoreIndex, dest_fs, dest_root: str, report: PullReport, verify: bool) -> list[str]:
    """Copy the store's quality/ results (``genview quality``), tables and settings last; return problems.

    With ``verify``, each copy's sha256 must equal the bytes read from the source and the tables and
    JSON files must read back; a file that fails is removed at dest (a filter then asks for
    `genview quality` instead of reading a damaged table).
    """
    src_dir = index.path(QUALITY_DIR)
    if not index.fs.exists(src_dir):
        return []
    relatives = sorted(posixpath.relpath(path, index.root) for path in index.fs.find(src_dir)
                       if not posixpath.basename(path).startswith("."))  # temp files of a running `genview quality`
    # Per-shard files first; quality.json (what says results exist) last.
    relatives.sort(key=lambda rel: (posixpath.dirname(rel) == QUALITY_DIR, rel.endswith("quality.json"), rel))
    problems = []
    for relative in relatives:
        dest_path = posixpath.join(dest_root, relative)
        dest_fs.makedirs(posixpath.dirname(dest_path), exist_ok=True)
        digest = hashlib.sha256()
        report.bytes_copied += _copy(index.fs, index.path(relative), dest_fs, dest_path, digest)
        problem = None
        if verify:
            if _file_sha256(dest_fs, dest_path) != digest.hexdigest():
                problem = f"{relative}: sha256 of the copy differs from the source's bytes"
            else:
                problem = _quality_problem(dest_fs, dest_root, relative)
        if problem:
            problems.append(problem)
            dest_fs.rm(dest_path)
        else:
            report.quality_files.append(relative)
    return problems
