"""Where each part of a store lives (the store format contract in DESIGN.md)."""

from __future__ import annotations

from genview.datastore.fs import join

FORMAT_NAME = "genview-store"
#: Store format version written by this genview; v1 stores (markers in manifest/, original source
#: bytes) stay readable.
FORMAT_VERSION = 2
SPEC_FILE = "genview.json"
SOURCES_FILE = "sources.parquet"
SHARDS_DIR = "shards"
MANIFEST_DIR = "manifest"
STATS_DIR = "stats"
#: `genview quality` results (tables, per-shard features); derived from the views, so cleared with them.
QUALITY_DIR = "quality"
#: Progress of the shards a running job has not committed yet (written only while it runs, e.g. by service jobs).
LIVE_PROGRESS_FILE = "_progress.json"
#: Shard leases of running jobs (one small json per shard being made; see datastore/lease.py).
LEASES_DIR = "leases"
KEY_WIDTH = 10
SHARD_WIDTH = 6


def sample_key(source_id: int) -> str:
    """Return the fixed-width, dot-free `__key__` of a source's sample."""
    return f"{int(source_id):0{KEY_WIDTH}d}"


def shard_name(shard: int) -> str:
    """Return a shard's zero-padded name, e.g. 000042."""
    return f"{int(shard):0{SHARD_WIDTH}d}"


def shard_tar(root: str, shard: int) -> str:
    """Path of a shard's tar."""
    return join(root, SHARDS_DIR, shard_name(shard) + ".tar")


def shard_manifest(root: str, shard: int) -> str:
    """Path of a shard's manifest fragment."""
    return join(root, MANIFEST_DIR, shard_name(shard) + ".parquet")


def shard_done(root: str, shard: int, format_version: int = FORMAT_VERSION) -> str:
    """Path of a shard's stats json, the done marker (written last).

    Format v2 keeps the markers in stats/, so manifest/ holds parquet only and every reader
    (polars, HF datasets, duckdb) opens it as a folder. Format v1 kept them beside the manifest
    as `manifest/_NNNNNN.json`.
    """
    if format_version < 2:
        return join(root, MANIFEST_DIR, "_" + shard_name(shard) + ".json")
    return join(root, STATS_DIR, shard_name(shard) + ".json")


def marker_shard(basename: str, format_version: int = FORMAT_VERSION) -> int | None:
    """Return the shard number a done-marker file name stands for, None for any other file."""
    stem, dot, ext = basename.rpartition(".")
    if not dot or ext != "json":
        return None
    if format_version < 2:
        if not stem.startswith("_"):
            return None
        stem = stem[1:]
    return int(stem) if stem.isdigit() and len(stem) == SHARD_WIDTH else None


def markers_dir(format_version: int = FORMAT_VERSION) -> str:
    """The folder holding the done markers in a store of this format version."""
    return MANIFEST_DIR if format_version < 2 else STATS_DIR


def shard_pattern(root: str, num_shards: int) -> str:
    """Brace pattern webdataset expands to every shard of the store."""
    return join(root, SHARDS_DIR, f"{{{shard_name(0)}..{shard_name(num_shards - 1)}}}.tar")


def relative_shard_pattern(num_shards: int) -> str:
    """The brace pattern relative to the store root, as recorded in genview.json."""
    if num_shards == 1:
        return f"{SHARDS_DIR}/{shard_name(0)}.tar"
    return f"{SHARDS_DIR}/{{{shard_name(0)}..{shard_name(num_shards - 1)}}}.tar"
