"""A shard's sources as a reference into sources.parquet, read by whoever runs the shard.

The driver of a job never holds a Python object per source (≈ 1 KB each: 95 GB at 100 M sources):
it hands each worker (in-process or a Ray actor) a `ShardRows` (store URL, shard, row count), and the
worker reads only that shard's rows. sources.parquet is in shard order and written in row groups
aligned to whole shards, so one shard's rows come from one or two row groups (the footer's shard
statistics say which), never the whole file.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genview.datastore import layout
from genview.datastore.fs import open_url

#: Rows per sources.parquet row group: about this many, rounded to whole shards.
TARGET_ROW_GROUP = 65536


def row_group_size(shard_size: int) -> int:
    """Rows per row group of sources.parquet: whole shards, about TARGET_ROW_GROUP rows."""
    return max(1, TARGET_ROW_GROUP // max(1, shard_size)) * max(1, shard_size)


def _parquet(url: str) -> tuple[Any, pq.ParquetFile]:
    fs, root = open_url(url)
    handle = fs.open(f"{root}/{layout.SOURCES_FILE}", "rb")
    # Single-threaded, no pre-buffering: no native IO thread calls back into Python (see fs.read_parquet).
    return handle, pq.ParquetFile(handle, pre_buffer=False)


def read_shard_table(url: str, shard: int) -> pa.Table:
    """One shard's rows of sources.parquet, reading only the row groups whose shard range holds it."""
    handle, parquet = _parquet(url)
    with handle:
        meta = parquet.metadata
        column = parquet.schema_arrow.get_field_index("shard")
        groups = []
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(column).statistics
            if stats is None or not stats.has_min_max or int(stats.min) <= shard <= int(stats.max):
                groups.append(group)
        table = parquet.read_row_groups(groups, use_threads=False)
    return table.filter(pc.equal(table.column("shard"), shard))


def _secondary_lookup(url: str, ids: Sequence[int], columns: list[str]) -> dict[int, dict[str, Any]]:
    """uri (and uri_bytes) of the given source ids (interpolation partners, anywhere in the listing)."""
    handle, parquet = _parquet(url)
    with handle:
        wanted = pa.array(sorted(set(int(i) for i in ids)), pa.int64())
        found: dict[int, dict[str, Any]] = {}
        for group in range(parquet.metadata.num_row_groups):
            table = parquet.read_row_group(group, columns=columns, use_threads=False)
            table = table.filter(pc.is_in(table.column("source_id"), value_set=wanted))
            for row in table.to_pylist():
                found[int(row["source_id"])] = row
    return found


def shard_records(url: str, shard: int) -> list[dict[str, Any]]:
    """The shard's sources as the shard function takes them (interpolation partners resolved)."""
    table = read_shard_table(url, shard)
    records = table.to_pylist()
    if "secondary_candidates" in table.column_names:
        columns = ["source_id", "uri"] + (["uri_bytes"] if "uri_bytes" in table.column_names else [])
        partners = _secondary_lookup(url, [sid for r in records for sid in r["secondary_candidates"]], columns)
        for record in records:
            rows = [partners[int(sid)] for sid in record["secondary_candidates"]]
            record["secondary_uris"] = [row["uri"] for row in rows]
            if "uri_bytes" in columns:
                record["secondary_uri_bytes"] = [row.get("uri_bytes") for row in rows]
    return records


@dataclasses.dataclass(frozen=True)
class ShardRows:
    """A shard's sources by reference: what a job's driver hands a worker (pickles to a few bytes)."""

    url: str
    shard: int
    count: int

    def __len__(self) -> int:
        return self.count

    def records(self) -> list[dict[str, Any]]:
        """Read the rows (in the worker)."""
        return shard_records(self.url, self.shard)


def resolve_records(records: "ShardRows | list[dict[str, Any]]") -> list[dict[str, Any]]:
    """The shard's source records, read from the store when given by reference."""
    return records.records() if isinstance(records, ShardRows) else records
