"""A store on any fsspec filesystem: its spec, frozen source listing, and which shards are done."""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import posixpath
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from genview import confinement
from genview.datastore import layout
from genview.datastore.fs import arrow_filesystem, is_local, join, open_url, read_parquet, write_atomic


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


def _list_prefix(fs: fsspec.AbstractFileSystem, directory: str, prefix: str | tuple[str, ...]) -> list[str]:
    """Paths of the files directly in `directory` whose names start with `prefix` (or one of several)."""
    if is_local(fs):
        try:
            with os.scandir(directory) as entries:
                return [join(directory, e.name) for e in entries if e.name.startswith(prefix)]
        except FileNotFoundError:
            return []
    if isinstance(prefix, tuple):
        return [path for one in prefix for path in _list_prefix(fs, directory, one)]
    try:
        # s3fs, gcsfs and adlfs list a key prefix server-side; `directory/prefix` is not a folder.
        found = fs.find(directory, prefix=prefix, maxdepth=1)
    except TypeError:  # a filesystem without server-side prefixes
        fs.invalidate_cache(directory)
        found = [p for p in (fs.ls(directory, detail=False) if fs.exists(directory) else [])
                 if posixpath.basename(p).startswith(prefix)]
    return [p for p in found if posixpath.basename(p).startswith(prefix)]


class StoreError(RuntimeError):
    """Raised for a store that cannot be used as asked (spec mismatch, not a store, missing parts)."""


def spec_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Return human-readable lines for every identity field that differs between two specs."""
    lines = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            lines.append(f"  {name}: store has {old.get(name)!r}, this run asks {new.get(name)!r}")
    return lines


def comparable_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A recorded spec without what may legitimately differ between runs of one job.

    Where the weights file lives (their sha256 stays) and the recipe's name (the values it gave stay).
    """
    out = dict(spec)
    weights = dict(out.get("weights") or {})
    weights.pop("id", None)
    out["weights"] = weights
    out.pop("recipe", None)
    return out


def spec_digest(spec: dict[str, Any]) -> str:
    """sha256 of a spec's comparable form as genview.json holds it; done markers carry it."""
    canonical = json.loads(json.dumps(comparable_spec(spec)))  # the JSON round trip genview.json makes
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


#: Files at the store's top level written by temp-then-rename (their temps are `.<name>.<hex>.tmp`).
_ROOT_FILES = (layout.SPEC_FILE, layout.SOURCES_FILE, layout.LIVE_PROGRESS_FILE)


class Store:
    """Read/write access to one store directory (local path or object-store URL)."""

    def __init__(self, url: str):
        self.url = str(url)
        self.fs, self.root = open_url(self.url)
        self._format_version: int | None = None
        self._spec_digest: str | None = None

    @property
    def format_version(self) -> int:
        """The store's format version (from genview.json; a store not yet written is the current one)."""
        if self._format_version is None:
            path = self.path(layout.SPEC_FILE)
            if self.fs.exists(path):
                try:
                    header = json.loads(self.fs.cat_file(path))
                except (ValueError, UnicodeDecodeError):
                    self.read_header()  # raises the one-line StoreError that names the damaged file
                self._format_version = int(header.get("format_version", 1) if isinstance(header, dict) else 1)
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
        try:
            header = json.loads(self.fs.cat_file(path))
        except (ValueError, UnicodeDecodeError) as exc:  # garbage, truncated or empty: say so in one line
            raise StoreError(f"{path} is damaged: not valid JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != layout.FORMAT_NAME:
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

    def spec_digest(self) -> str | None:
        """The digest of this store's recorded spec (None before genview.json exists); cached."""
        if self._spec_digest is None and self.exists():
            self._spec_digest = spec_digest(self.spec)
        return self._spec_digest

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
        self._spec_digest = None

    def update_header(self, facts: dict[str, Any]) -> None:
        """Rewrite genview.json with some run facts replaced (e.g. the shard count after an extension)."""
        header = self.read_header()
        header.update(facts)
        write_atomic(self.fs, self.path(layout.SPEC_FILE), (json.dumps(header, indent=2, sort_keys=True) + "\n").encode())
        self._spec_digest = None

    def update_spec(self, **fields: Any) -> None:
        """Rewrite genview.json with these spec fields set; the rest of the header stays as it is."""
        header = self.read_header()
        header["spec"].update(fields)
        write_atomic(self.fs, self.path(layout.SPEC_FILE), (json.dumps(header, indent=2, sort_keys=True) + "\n").encode())

    def clear(self) -> None:
        """Delete every store part (for --overwrite); other files in the folder are left alone."""
        for name in (layout.SPEC_FILE, layout.SOURCES_FILE, *_SHARD_DIRS, layout.QUALITY_DIR, layout.LEASES_DIR):
            path = self.path(name)
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        self._format_version = None

    # -- sources ---------------------------------------------------------------------------
    def write_sources(self, table: pa.Table, shard_size: int | None = None) -> None:
        """Freeze the source listing into sources.parquet (row groups of whole shards when `shard_size` is given)."""
        from genview.datastore.shard_rows import row_group_size

        buffer = io.BytesIO()
        pq.write_table(table, buffer, row_group_size=row_group_size(shard_size) if shard_size else None)
        write_atomic(self.fs, self.path(layout.SOURCES_FILE), buffer.getvalue())

    def read_sources(self) -> pa.Table:
        """Return the frozen source listing."""
        return read_parquet(self.fs, self.path(layout.SOURCES_FILE))

    def num_shards(self) -> int:
        """Return how many shards the plan has (from genview.json, else sources.parquet's footer: no rows read)."""
        return self.plan_size()[1]

    def plan_size(self) -> tuple[int, int]:
        """Return (sources, shards) of the plan without reading sources.parquet's rows.

        genview.json records both (`num_sources` since stores could grow; `num_shards` always); an
        older header falls back to the Parquet footer: its row count and the shard column's maximum.
        """
        header = self.read_header() if self.exists() else {}  # a new store writes sources.parquet first
        if "num_sources" in header and "num_shards" in header:
            return int(header["num_sources"]), int(header["num_shards"])
        with self.fs.open(self.path(layout.SOURCES_FILE), "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
            column = meta.schema.to_arrow_schema().get_field_index("shard")
            highest = -1
            for group in range(meta.num_row_groups):
                stats = meta.row_group(group).column(column).statistics
                if stats is None or not stats.has_min_max:
                    # No statistics (a writer that skipped them): read the one column.
                    shards = self.read_sources_columns(["shard"]).column("shard")
                    return meta.num_rows, (pc.max(shards).as_py() + 1) if len(shards) else 0
                highest = max(highest, int(stats.max))
            return meta.num_rows, highest + 1

    def read_sources_columns(self, columns: list[str]) -> pa.Table:
        """Return some columns of the frozen listing (only those are decoded)."""
        return read_parquet(self.fs, self.path(layout.SOURCES_FILE), columns=columns)

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
        if shard is None and self.fs.exists(self.root):
            # genview.json, sources.parquet and _progress.json are written temp-then-rename too.
            self.fs.invalidate_cache(self.root)
            for path in self.fs.ls(self.root, detail=False):
                base = posixpath.basename(path)
                if base.endswith(".tmp") and any(base.startswith(f".{name}.") for name in _ROOT_FILES):
                    found.append(path)
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

    def shard_leftovers(self, shard: int) -> list[str]:
        """Return one shard's temporary files, looking only under its own name prefix.

        `leftovers(shard)` lists whole folders; at every shard start that is shards x files per
        job. Here a local folder is scanned in C (no stat per file) and an object store is asked
        for the shard's key prefix only (one request whatever the store's size).
        """
        name = layout.shard_name(shard)
        found = []
        for folder in _SHARD_DIRS:
            # v1 markers' final names start with `_`
            found += [p for p in _list_prefix(self.fs, self.path(folder), (f".{name}.", f"._{name}."))
                      if p.endswith(".tmp")]
        return found

    def reset_shard(self, shard: int) -> None:
        """Remove every trace of a shard (tar, manifest, marker, temp files) so it is redone from scratch."""
        # The marker goes first: a crash half-way through leaves a shard that is not done, never a
        # marker that vouches for a missing tar.
        from genview.datastore.summary import index_path, summary_path

        paths = [self.marker_path(shard), layout.shard_tar(self.root, shard), layout.shard_manifest(self.root, shard),
                 summary_path(self.root, shard), index_path(self.root, shard)]
        for path in paths + self.shard_leftovers(shard):
            if is_local(self.fs) and confinement.remove(path):
                continue  # removed at its folder opened under the job's output roots
            try:
                self.fs.rm(path)
            except FileNotFoundError:
                continue  # another cleaner got there first

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
