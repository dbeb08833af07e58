"""The manifest: one parquet row per view and per failed source, with a fixed schema."""

from __future__ import annotations

import io
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source_id", pa.int64()),
        ("source_uri", pa.string()),
        ("label", pa.string()),
        ("shard", pa.int32()),
        ("view", pa.int32()),
        ("member", pa.string()),
        ("model", pa.string()),
        ("seed", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        # Gen-SIS's alpha: the weight of the primary (source) in the view's condition. Format v1 stores
        # had "alpha" = the weight of the secondary (1 - primary_weight).
        ("primary_weight", pa.float32()),
        ("secondary_id", pa.int64()),
        ("similarity", pa.float32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("bytes", pa.int64()),
    ]
)

STATUS_OK = "ok"
STATUS_FAILED = "failed"


def manifest_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Build a manifest table from row dicts; absent columns are null."""
    rows = list(rows)
    return pa.table(
        {field.name: pa.array([row.get(field.name) for row in rows], field.type) for field in MANIFEST_SCHEMA},
        schema=MANIFEST_SCHEMA,
    )


def manifest_bytes(table: pa.Table) -> bytes:
    """Serialise a manifest fragment to parquet bytes."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
