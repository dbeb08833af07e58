"""Read-only index of a genview store: header, complete shards, per-shard sample counts, manifest.

Only the store-format contract (DESIGN.md) is used here, never genview's writer, so any store that
follows the contract can be read -- also one written by another tool.
"""

from __future__ import annotations

import json
import posixpath
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from fsspec.core import url_to_fs

from genview.datastore.fs import arrow_filesystem, read_parquet
from genview.datastore.layout import MANIFEST_DIR, SHARDS_DIR, SOURCES_FILE, SPEC_FILE
from genview.datastore.manifest import STATUS_OK
from genview.datastore.store import list_done_markers
from genview.datastore.store_summary import read_markers
from genview.datastore.summary import has_summary

#: Newest store format this client reads (v2: done markers in stats/, KEY.cls; v1 still read).
SUPPORTED_FORMAT_VERSION = 2


class StoreFormatError(ValueError):
    """Raised when a store does not follow the store-format contract; the message names the file."""


class PartialStoreError(StoreFormatError):
    """Raised when a store has fewer done shards than genview.json plans (unfinished or half-copied)."""


class PartialStoreWarning(UserWarning):
    """Warned when training on a partial store with ``allow_partial=True``."""


class CorruptShardError(RuntimeError):
    """Raised when a shard's tar cannot be read or disagrees with its manifest; names the shard."""


def shard_name(shard: int) -> str:
    """Return a shard's zero-padded file stem, e.g. 000042."""
    return f"{int(shard):06d}"


def open_store_fs(store: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return (filesystem, root path inside it) for a local path or an fsspec URL such as s3://bucket/store."""
    fs, root = url_to_fs(str(store), **(storage_options or {}))
    return fs, (root.rstrip("/") or root)


@dataclass(frozen=True)
class ShardEntry:
    """One complete shard: its number, tar path inside the store's filesystem, sample count, done marker path."""

    shard: int
    path: str
    samples: int
    done_path: str


class StoreIndex:
    """What a reader needs to know about a store, built from genview.json and the manifest.

    Only shards with a done marker are listed: a shard without one is still being written and is,
    by the contract, not there. Markers are found by ``genview.datastore.store.list_done_markers``
    (stats/NNNNNN.json in format v2, manifest/_NNNNNN.json in v1).
    A shard's sample count is the number of manifest rows with ``view == 0`` and
    ``status == "ok"`` (one per source that has a tar sample).
    """

    def __init__(self, store: str, storage_options: dict[str, Any] | None = None):
        self.url = str(store)
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = open_store_fs(self.url, self.storage_options)
        self.header = self._read_header()
        self.spec: dict[str, Any] = self.header.get("spec", self.header)
        if "k" not in self.spec:
            raise StoreFormatError(f"{self.path(SPEC_FILE)} has no 'k' (views per source) in its spec")
        self.k = int(self.spec["k"])
        #: False for a store made with --source-copy none: its samples have no src.* member.
        self.has_source = self.spec.get("source_copy") != "none"
        self.shards: list[ShardEntry] = self._list_shards()
        self._by_shard = {entry.shard: entry for entry in self.shards}

    # -- paths -------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Return a path inside the store (on its filesystem)."""
        return posixpath.join(self.root, *parts)

    def tar_path(self, shard: int) -> str:
        """Return the path of a shard's tar."""
        return self.path(SHARDS_DIR, shard_name(shard) + ".tar")

    def manifest_path(self, shard: int) -> str:
        """Return the path of a shard's manifest fragment."""
        return self.path(MANIFEST_DIR, shard_name(shard) + ".parquet")

    def done_path(self, shard: int) -> str:
        """Return the path of a complete shard's stats json (the done marker)."""
        return self.entry(shard).done_path

    # -- contents ----------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        """Total tar samples (ok sources) over all complete shards."""
        return sum(entry.samples for entry in self.shards)

    @property
    def shard_counts(self) -> list[tuple[int, int]]:
        """(shard, samples) for every complete shard, in shard order."""
        return [(entry.shard, entry.samples) for entry in self.shards]

    def entry(self, shard: int) -> ShardEntry:
        """Return the entry of one complete shard."""
        if shard not in self._by_shard:
            raise KeyError(f"shard {shard_name(shard)} is not a complete shard of {self.url}")
        return self._by_shard[shard]

    def manifest_dataset(self) -> pads.Dataset | None:
        """The manifest fragments of the complete shards as one dataset (None when there are none), for scans
        that read only the columns and rows they need."""
        paths = [self.manifest_path(entry.shard) for entry in self.shards]
        if not paths:
            return None
        return pads.dataset(paths, format="parquet", filesystem=arrow_filesystem(self.fs))

    def manifest(self, columns: Sequence[str] | None = None, filter: pc.Expression | None = None) -> pa.Table:
        """Return manifest rows of the complete shards (optionally only some columns / rows)."""
        dataset = self.manifest_dataset()
        if dataset is None:
            return pa.table({})
        return dataset.to_table(columns=list(columns) if columns is not None else None, filter=filter)

    def sources(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Return the frozen source listing (sources.parquet)."""
        path = self.path(SOURCES_FILE)
        if not self.fs.exists(path):
            raise StoreFormatError(f"{path} is missing: not a complete genview store")
        return read_parquet(self.fs, path, columns=list(columns) if columns is not None else None)

    # -- building ----------------------------------------------------------------------------
    def _read_header(self) -> dict[str, Any]:
        path = self.path(SPEC_FILE)
        if not self.fs.exists(path):
            raise StoreFormatError(f"{self.url} is not a genview store: {path} does not exist")
        try:
            header = json.loads(self.fs.cat_file(path))
        except json.JSONDecodeError as exc:
            raise StoreFormatError(f"{path} is not valid JSON: {exc}") from None
        version = header.get("format_version")
        if not isinstance(version, int):
            raise StoreFormatError(f"{path} has no integer format_version")
        if version > SUPPORTED_FORMAT_VERSION:
            raise StoreFormatError(
                f"{path} has format_version {version}; this trainer client reads up to "
                f"{SUPPORTED_FORMAT_VERSION}: upgrade genview"
            )
        return header

    def _list_shards(self) -> list[ShardEntry]:
        manifest_dir = self.path(MANIFEST_DIR)
        markers = list_done_markers(self.fs, self.root)
        done = sorted(markers)
        self.markers: dict[int, dict[str, Any]] = {}
        if not done:
            return []
        tars = set()
        shards_dir = self.path(SHARDS_DIR)
        if self.fs.exists(shards_dir):
            tars = {posixpath.basename(p) for p in self.fs.ls(shards_dir, detail=False)}
        for shard in done:
            if shard_name(shard) + ".tar" not in tars:
                raise StoreFormatError(
                    f"shard {shard_name(shard)} has a done marker but {self.tar_path(shard)} is missing"
                )
        # Shards whose marker carries a summary say how many ok sources (= tar samples) they hold;
        # only the others' fragments are scanned.
        self.markers = read_markers(self.fs, markers)
        counts = dict.fromkeys(done, 0)
        scan: set[int] = set()
        for shard in done:
            if has_summary(self.markers[shard]):
                counts[shard] = int(self.markers[shard]["summary"]["ok_sources"])
            else:
                scan.add(shard)
        if not scan:
            return [ShardEntry(shard, self.tar_path(shard), counts[shard], markers[shard]) for shard in done]
        dataset = pads.dataset([self.manifest_path(s) for s in sorted(scan)], format="parquet", filesystem=arrow_filesystem(self.fs))
        rows = dataset.to_table(
            columns=["shard"], filter=(pc.field("view") == 0) & (pc.field("status") == STATUS_OK)
        )
        if rows.num_rows:
            for item in pc.value_counts(rows.column("shard")).to_pylist():
                shard = int(item["values"])
                if shard not in scan:
                    raise StoreFormatError(
                        f"a manifest fragment under {manifest_dir} has rows of shard {shard}, which has no done marker"
                    )
                counts[shard] = int(item["counts"])
        return [ShardEntry(shard, self.tar_path(shard), counts[shard], markers[shard]) for shard in done]

    @property
    def planned_shards(self) -> int | None:
        """The shard count genview.json plans (format v2), None when the header does not record it."""
        value = self.header.get("num_shards")
        return None if value is None else int(value)

    def require_complete(self, allow_partial: bool = False) -> None:
        """Refuse a store with fewer done shards than planned; with `allow_partial`, warn with the counts instead.

        A half-finished generate or an interrupted `genview pull` leaves such a store: training on
        it silently would skip whole shards of the dataset.
        """
        planned = self.planned_shards
        if planned is None or len(self.shards) >= planned:
            return
        what = (f"{self.url} has {len(self.shards)} of its {planned} planned shards done "
                f"({self.num_samples} samples readable)")
        if not allow_partial:
            raise PartialStoreError(
                f"{what}: finish it (rerun the generate command or `genview pull`; `genview verify` lists what is "
                "missing), or pass allow_partial=True to train on the done shards only"
            )
        warnings.warn(f"{what}; training on the done shards only (allow_partial=True)", PartialStoreWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"StoreIndex({self.url!r}, shards={len(self.shards)}, samples={self.num_samples}, k={self.k})"
