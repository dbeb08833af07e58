"""A store that grows: compare a fresh listing with the frozen one, and plan the new sources as new shards.

Like img2dataset's incremental mode: sources already planned keep their id, shard and views; the
images added to the folder get new ids after the highest one and new shards after the last one, in
their own seeded random order (so each new shard is a random sample of what was added); images gone
from the folder stay in the store (their views exist) and are only counted.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genview.datastore import layout


@dataclasses.dataclass
class ListingChange:
    """What changed between the frozen listing (sources.parquet) and the folder now."""

    added: pa.Table  # listing rows (with the listing's own source_id) not in sources.parquet
    removed: int  # sources.parquet rows whose uri the folder no longer lists

    @property
    def changed(self) -> bool:
        return bool(self.added.num_rows or self.removed)

    def describe(self) -> str:
        """E.g. '4 images added (1 new class), 0 removed'."""
        return f"{self.added.num_rows} image(s) added, {self.removed} removed"


def listing_change(frozen_uris: pa.Array | pa.ChunkedArray, listing: pa.Table) -> ListingChange:
    """Compare the frozen uris with a fresh listing's rows (set difference on uri, in Arrow)."""
    now = listing.column("uri")
    added = listing.filter(pc.invert(pc.is_in(now, value_set=pa.chunked_array(frozen_uris).combine_chunks())))
    kept = pc.sum(pc.is_in(frozen_uris, value_set=now.combine_chunks())).as_py() or 0
    return ListingChange(added=added, removed=len(frozen_uris) - int(kept))


def _label_indices(frozen: pa.Table, added_labels: list[str | None]) -> list[int | None]:
    """Class indices of the added rows: a label already in the store keeps its index; a new one gets the next free."""
    known = {}
    for label, index in zip(frozen.column("label").to_pylist(), frozen.column("label_index").to_pylist()):
        if label is not None and index is not None:
            known[label] = int(index)
    new = sorted({label for label in added_labels if label is not None and label not in known})
    if new and all(label.isdigit() for label in new):
        known.update({label: int(label) for label in new})  # integer labels are their own class index
    else:
        following = max(known.values(), default=-1) + 1
        known.update({label: following + i for i, label in enumerate(new)})
    return [None if label is None else known[label] for label in added_labels]


def extension_rows(frozen: pa.Table, added: pa.Table, *, shard_size: int, seed: int, extension: int) -> pa.Table:
    """The added listing rows as new sources.parquet rows: new ids, labels, shards after the last one.

    `frozen` needs source_id, label, label_index and shard; `extension` numbers the extensions
    (1, 2, ...) so each one's order is seeded on its own.
    """
    first_id = int(pc.max(frozen.column("source_id")).as_py()) + 1
    first_shard = int(pc.max(frozen.column("shard")).as_py()) + 1
    count = added.num_rows
    rows = added.drop_columns([c for c in ("source_id", "label_index", "shard") if c in added.column_names])
    rows = rows.add_column(0, "source_id", pa.array(np.arange(first_id, first_id + count), pa.int64()))
    labels = rows.column("label").to_pylist()
    rows = rows.add_column(rows.column_names.index("label") + 1, "label_index",
                           pa.array(_label_indices(frozen, labels), pa.int32()))
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A4D, int(extension)])).permutation(count)
    rows = rows.take(pa.array(order, pa.int64()))
    return rows.append_column("shard", pa.array(first_shard + np.arange(count) // shard_size, pa.int32()))


def conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """`rows` with exactly `schema`'s columns, in its order (a column it lacks filled with nulls)."""
    columns = []
    for field in schema:
        if field.name in rows.column_names:
            columns.append(rows.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(rows.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def shard_pattern_facts(num_sources: int, num_shards: int) -> dict[str, object]:
    """The plan facts genview.json records about the shards (updated by every extension)."""
    return {"num_sources": num_sources, "num_shards": num_shards,
            "shard_pattern": layout.relative_shard_pattern(num_shards)}
