"""A store on any fsspec filesystem: its spec, frozen source listing, and which shards are done."""

from __future__ import annotations

import datetime as _dt
import io
import json
import posixpath
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from genview.datastore import layout
from genview.datastore.fs import arrow_filesystem, join, open_url, read_parquet, write_atomic


def list_done_markers(fs: fsspec.AbstractFileSystem, root: str) -> dict[int, str]:
    """Return {shard: done-marker path} of a store: v2 stats/NNNNNN.json, else v1 manifest/_NNNNNN.json.

    For readers that take any store as found, whatever its format version (the trainer client,
    pull, shardcheck): both locations are listed, so v1 stores stay readable.
    """
    found: dict[int, str] = {}
    # v1 first, so that a v2 marker of the same shard wins.
    for version in (1, 2):
        directory = join(root, layout.markers_dir(version))
        fs.invalidate_cache(directory)  # other processes write markers: never trust a cached listing
        if not fs.exists(directory):
            continue
        for item in fs.ls(directory, detail=False):
            shard = layout.marker_shard(posixpath.basename(item), version)
            if shard is not None:
                found[shard] = item
    return found


def find_done_marker(fs: fsspec.AbstractFileSystem, root: str, shard: int) -> str | None:
    """Return the path of one shard's done marker (v2 stats/, else v1 manifest/_), or None when the shard is not done."""
    for version in (2, 1):
        path = layout.shard_done(root, shard, version)
        if fs.exists(path):
            return path
    return None


#: Folders that hold per-shard parts (stats/ only exists from format v2 on).
_SHARD_DIRS = (layout.SHARDS_DIR, layout.MANIFEST_DIR, layout.STATS_DIR)


class StoreError(RuntimeError):
    """Raised for a store that cannot be used as asked (spec mismatch, not a store, missing parts)."""


def spec_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Return human-readable lines for every identity field that differs between two specs."""
    lines = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            lines.append(f"  {name}: store has {old.get(name)!r}, this run asks {new.get(name)!r}")
    return lines


class Store:
    """Read/write access to one store directory (local path or object-store URL)."""

    def __init__(self, url: str):
        self.url = str(url)
        self.fs, self.root = open_url(self.url)
        self._format_version: int | None = None

    @property
    def format_version(self) -> int:
        """The store's format version (from genview.json; a store not yet written is the current one)."""
        if self._format_version is None:
            path = self.path(layout.SPEC_FILE)
            if self.fs.exists(path):
                self._format_version = int(json.loads(self.fs.cat_file(path)).get("format_version", 1))
            else:
                return layout.FORMAT_VERSION
        return self._format_version

    # -- paths ---------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Return a path inside the store."""
        return join(self.root, *parts)

    def exists(self) -> bool:
        """Return True when the store has a genview.json."""
        return self.fs.exists(self.path(layout.SPEC_FILE))

    # -- spec ------------------------------------------------------------------------------
    def read_header(self) -> dict[str, Any]:
        """Return the parsed genview.json; StoreError if this is not a store."""
        path = self.path(layout.SPEC_FILE)
        if not self.fs.exists(path):
            raise StoreError(f"{self.url} is not a genview store (no {layout.SPEC_FILE})")
        header = json.loads(self.fs.cat_file(path))
        if header.get("format") != layout.FORMAT_NAME:
            raise StoreError(f"{path} is not a genview store header")
        if header.get("format_version", 0) > layout.FORMAT_VERSION:
            raise StoreError(
                f"{self.url} uses store format {header['format_version']}, newer than this genview "
                f"understands ({layout.FORMAT_VERSION}); upgrade genview"
            )
        return header

    @property
    def spec(self) -> dict[str, Any]:
        """The job spec recorded in genview.json."""
        return self.read_header()["spec"]

    def write_header(self, spec: dict[str, Any], extra: dict[str, Any]) -> None:
        """Write genview.json (format version, the full spec, and run facts such as versions)."""
        from genview import __version__

        self._format_version = layout.FORMAT_VERSION
        header = {
            "format": layout.FORMAT_NAME,
            "format_version": layout.FORMAT_VERSION,
            "genview_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "spec": spec,
            **extra,
        }
        self.fs.makedirs(self.root, exist_ok=True)
        write_atomic(self.fs, self.path(layout.SPEC_FILE), (json.dumps(header, indent=2, sort_keys=True) + "\n").encode())

    def clear(self) -> None:
        """Delete every store part (for --overwrite); other files in the folder are left alone."""
        for name in (layout.SPEC_FILE, layout.SOURCES_FILE, *_SHARD_DIRS, layout.QUALITY_DIR):
            path = self.path(name)
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        self._format_version = None

    # -- sources ---------------------------------------------------------------------------
    def write_sources(self, table: pa.Table) -> None:
        """Freeze the source listing into sources.parquet."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        write_atomic(self.fs, self.path(layout.SOURCES_FILE), buffer.getvalue())

    def read_sources(self) -> pa.Table:
        """Return the frozen source listing."""
        return read_parquet(self.fs, self.path(layout.SOURCES_FILE))

    def num_shards(self) -> int:
        """Return how many shards the plan has."""
        shards = self.read_sources().column("shard").to_pylist()
        return max(shards) + 1 if shards else 0

    # -- shards ----------------------------------------------------------------------------
    def prepare_dirs(self) -> None:
        """Create the store folder with shards/, manifest/ and stats/ (a no-op on object stores)."""
        self.fs.makedirs(self.root, exist_ok=True)
        for name in _SHARD_DIRS:
            self.fs.makedirs(self.path(name), exist_ok=True)

    def refresh(self) -> None:
        """Forget cached listings of the shard folders: other processes (workers) write there too."""
        for name in _SHARD_DIRS:
            self.fs.invalidate_cache(self.path(name))

    def marker_path(self, shard: int) -> str:
        """Path of a shard's done marker in this store's format version."""
        return layout.shard_done(self.root, shard, self.format_version)

    def done_shards(self) -> set[int]:
        """Return the shards whose done marker exists."""
        version = self.format_version
        markers = self.path(layout.markers_dir(version))
        self.refresh()
        if not self.fs.exists(markers):
            return set()
        done = set()
        for path in self.fs.ls(markers, detail=False):
            shard = layout.marker_shard(posixpath.basename(path), version)
            if shard is not None:
                done.add(shard)
        return done

    def read_stats(self, shard: int) -> dict[str, Any]:
        """Return a done shard's stats json."""
        return json.loads(self.fs.cat_file(self.marker_path(shard)))

    def leftovers(self, shard: int | None = None) -> list[str]:
        """Return temporary files left by interrupted writes (optionally of one shard only).

        Temp names are `.<final name>.<hex>.tmp`; a v1 marker's final name starts with `_`, so
        that prefix is ignored when matching a shard.
        """
        found = []
        self.refresh()
        for name in _SHARD_DIRS:
            directory = self.path(name)
            if not self.fs.exists(directory):
                continue
            for path in self.fs.ls(directory, detail=False):
                base = posixpath.basename(path)
                if base.startswith(".") and base.endswith(".tmp"):
                    if shard is None or base[1:].lstrip("_").startswith(layout.shard_name(shard) + "."):
                        found.append(path)
        return found

    def reset_shard(self, shard: int) -> None:
        """Remove every trace of a shard (tar, manifest, marker, temp files) so it is redone from scratch."""
        # The marker goes first: a crash half-way through leaves a shard that is not done, never a
        # marker that vouches for a missing tar.
        from genview.datastore.summary import index_path, summary_path

        paths = [self.marker_path(shard), layout.shard_tar(self.root, shard), layout.shard_manifest(self.root, shard),
                 summary_path(self.root, shard), index_path(self.root, shard)]
        for path in paths + self.leftovers(shard):
            if self.fs.exists(path):
                self.fs.rm(path)

    def manifest(self, columns: list[str] | None = None) -> pa.Table:
        """Return the manifest of all done shards as one table, in the current format's columns.

        Format v1 fragments have `alpha` (the weight of the secondary) where v2 has `primary_weight`
        (Gen-SIS's alpha, the weight of the source): they are converted here, so every reader of a
        store sees one convention.
        """
        from genview.datastore.manifest import MANIFEST_SCHEMA

        paths = [layout.shard_manifest(self.root, s) for s in sorted(self.done_shards())]
        if not paths:
            empty = MANIFEST_SCHEMA.empty_table()
            return empty.select(columns) if columns is not None else empty
        dataset = pads.dataset(paths, format="parquet", filesystem=arrow_filesystem(self.fs))
        if "primary_weight" in dataset.schema.names or "alpha" not in dataset.schema.names:
            return dataset.to_table(columns=columns)
        wanted = None if columns is None else ["alpha" if c == "primary_weight" else c for c in columns]
        table = dataset.to_table(columns=wanted)
        index = table.schema.get_field_index("alpha")
        if index < 0:
            return table
        primary = pc.subtract(pa.scalar(1.0, pa.float32()), table.column(index).cast(pa.float32()))
        return table.set_column(index, pa.field("primary_weight", pa.float32()), primary)
