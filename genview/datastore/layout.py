"""Where each part of a store lives (the store format contract in DESIGN.md)."""

from __future__ import annotations

from genview.datastore.fs import join

FORMAT_NAME = "genview-store"
FORMAT_VERSION = 1
SPEC_FILE = "genview.json"
SOURCES_FILE = "sources.parquet"
SHARDS_DIR = "shards"
MANIFEST_DIR = "manifest"
#: Progress of the shards a running job has not committed yet (written only while it runs, e.g. by service jobs).
LIVE_PROGRESS_FILE = "_progress.json"
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


def shard_done(root: str, shard: int) -> str:
    """Path of a shard's stats json, the done marker (written last).

    The leading underscore is the Hadoop/Spark convention for metadata files (`_SUCCESS`): pyarrow,
    Spark and duckdb dataset readers skip it, so `pyarrow.dataset.dataset("OUT/manifest",
    format="parquet")` reads the manifest without tripping over the json markers beside it.
    """
    return join(root, MANIFEST_DIR, "_" + shard_name(shard) + ".json")


def shard_pattern(root: str, num_shards: int) -> str:
    """Brace pattern webdataset expands to every shard of the store."""
    return join(root, SHARDS_DIR, f"{{{shard_name(0)}..{shard_name(num_shards - 1)}}}.tar")
