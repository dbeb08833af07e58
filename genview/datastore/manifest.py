"""The manifest: one parquet row per view and per failed source, with a fixed schema."""

from __future__ import annotations

import io
import json
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

_FIELDS = [
        ("key", pa.string()),
        ("source_id", pa.int64()),
        ("source_uri", pa.string()),
        ("label", pa.string()),
        ("label_index", pa.int32()),
        ("shard", pa.int32()),
        ("view", pa.int32()),
        ("member", pa.string()),
        ("model", pa.string()),
        ("seed", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("alpha", pa.float32()),
        ("secondary_id", pa.int64()),
        ("similarity", pa.float32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("bytes", pa.int64()),
]


def _pandas_metadata(fields: list[tuple[str, pa.DataType]]) -> bytes:
    """pandas metadata that makes `pandas.read_parquet` use nullable integer dtypes.

    Without it pandas turns an integer column with nulls (seeds of failed-source rows) into
    float64 and loses precision above 2**53: a seed 2779440610838828722 would come back changed.
    pyarrow's to_pandas honours the `numpy_type` recorded here (the format pandas itself writes).
    """
    columns = []
    for name, dtype in fields:
        if pa.types.is_integer(dtype):
            bits = dtype.bit_width
            pandas_type, numpy_type = f"int{bits}", f"Int{bits}"
        elif pa.types.is_floating(dtype):
            pandas_type = numpy_type = f"float{dtype.bit_width}"
        else:
            pandas_type, numpy_type = "unicode", "object"
        columns.append({"name": name, "field_name": name, "pandas_type": pandas_type, "numpy_type": numpy_type, "metadata": None})
    meta = {"index_columns": [], "column_indexes": [], "columns": columns, "creator": {"library": "genview"}}
    return json.dumps(meta).encode()


MANIFEST_SCHEMA = pa.schema(_FIELDS, metadata={b"pandas": _pandas_metadata(_FIELDS)})

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
