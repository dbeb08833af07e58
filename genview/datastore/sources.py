"""Reader: list a dataset's images into a frozen, sorted source table."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import posixpath
import re
from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from genview import confinement
from genview.datastore.fs import is_local, open_url

#: Extensions treated as images (compared case-insensitively).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
#: Column names accepted as the image path in a list file, in order of preference.
PATH_COLUMNS = ("path", "uri", "filepath", "file", "image", "filename")
LIST_FILE_SUFFIXES = (".txt", ".csv", ".parquet")


class SourceError(ValueError):
    """Raised when a source folder or list file cannot be listed; the message says why."""


def is_image_name(name: str) -> bool:
    """Return True for a non-hidden file name with an image extension (any case)."""
    base = posixpath.basename(name)
    return not base.startswith(".") and posixpath.splitext(base)[1].lower() in IMAGE_EXTENSIONS


@dataclasses.dataclass
class SourceListing:
    """A listed source: the table of images, and the files passed over (not images, hidden)."""

    table: pa.Table
    skipped: list[str]

    @property
    def digest(self) -> dict[str, object]:
        """Count and sha256 of the listing (uri and label per image, in source_id order), for genview.json."""
        return listing_digest(self.table)


def listing_digest(table: pa.Table) -> dict[str, object]:
    """Count and sha256 of a source table's (uri, label) pairs in source_id order.

    Recorded in genview.json so that a rerun which has to list the source again (sources.parquet
    lost) can tell whether the folder changed since the done shards were made.
    """
    order = np.argsort(table.column("source_id").to_numpy(zero_copy_only=False), kind="stable")
    uris = table.column("uri").to_pylist()
    labels = table.column("label").to_pylist()
    sha = hashlib.sha256()
    for i in order:
        sha.update(f"{uris[i]}\t{labels[i] if labels[i] is not None else ''}\n".encode("utf-8", "surrogateescape"))
    return {"count": table.num_rows, "sha256": sha.hexdigest()}


def display_text(text: str) -> str:
    """A path as valid UTF-8 text: undecodable bytes (kept by Python as surrogates) become \\xNN."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def _url(fs, path: str) -> str:
    """Return a path as the URL the rest of genview opens (protocol kept for object stores)."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def _list_folder(fs, root: str) -> tuple[list[str], list[str | None], list[str]]:
    """List images under root recursively; label = first directory level, None for files at the root.

    Returns (uris, labels, skipped): files that are hidden or have no image extension are skipped
    and counted, so a user can see what was passed over.
    """
    uris, labels, skipped = [], [], []
    for path in fs.find(root):
        rel = posixpath.relpath(path, root)
        parts = rel.split("/")
        if any(part.startswith(".") for part in parts) or not is_image_name(path):
            skipped.append(rel)  # hidden files/folders and non-images are not sources
            continue
        uris.append(_url(fs, path))
        labels.append(parts[0] if len(parts) > 1 else None)
    return uris, labels, skipped


def _read_list_table(fs, path: str) -> tuple[pa.Table, list[str] | None]:
    """Read a txt (one path per line), csv or parquet list file into a table with a 'path' column.

    For txt files the raw lines are returned too: a line that is not UTF-8 is kept (as Python's
    surrogate escapes) so the file it names can still be opened.
    """
    suffix = posixpath.splitext(path)[1].lower()
    # A local list file is opened like a source (genview.confinement: under the job's roots, if any).
    data = confinement.read_bytes(path, "read") if is_local(fs) else fs.cat_file(path)
    if suffix == ".txt":
        # surrogateescape: a name that is not UTF-8 is still a file to read (and a row), not a crash.
        lines = [line.strip() for line in data.decode("utf-8", "surrogateescape").splitlines()]
        raw = [line for line in lines if line and not line.startswith("#")]
        return pa.table({"path": [display_text(line) for line in raw]}), raw
    if suffix == ".csv":
        table = pacsv.read_csv(pa.BufferReader(data))
    else:
        table = pq.read_table(pa.BufferReader(data), use_threads=False, pre_buffer=False)
    for name in PATH_COLUMNS:
        if name in table.column_names:
            return table.rename_columns(["path" if c == name else c for c in table.column_names]), None
    raise SourceError(
        f"list file {path} has no path column; expected one of {', '.join(PATH_COLUMNS)}, "
        f"found {', '.join(table.column_names)}"
    )


def _list_file(fs, path: str) -> tuple[list[str], list[str | None], pa.Table]:
    """Resolve a list file's paths (relative ones against its folder) and labels; keep extra columns."""
    table, raw = _read_list_table(fs, path)
    base = posixpath.dirname(path)
    entries = raw if raw is not None else table.column("path").to_pylist()
    if "uri_bytes" in table.column_names:
        # The exact bytes of a name that is not UTF-8 (a store's sources.parquet used as a list): they
        # are the path of that row, resolved and confined exactly like any other entry, never a
        # second path beside it (the worker would open it while only `path` was checked).
        entries = [os.fsdecode(b) if b is not None else e for e, b in zip(entries, table.column("uri_bytes").to_pylist())]
    uris = []
    for entry in entries:
        entry = str(entry)
        if "://" in entry:
            uris.append(entry)
        else:
            full = posixpath.normpath(entry if entry.startswith("/") else posixpath.join(base, entry))
            uris.append(_url(fs, full))
    labels = table.column("label").to_pylist() if "label" in table.column_names else [None] * len(uris)
    labels = [None if v is None else str(v) for v in labels]
    extra = table.drop_columns([c for c in ("path", "label", "uri_bytes") if c in table.column_names])
    return uris, labels, extra


def label_indices(labels: list[str | None]) -> dict[str, int]:
    """Map label names to class indices: integer labels keep their value, names get their sorted rank.

    Sorted rank is torchvision ImageFolder's rule, so ImageNet's wnid folders get the standard
    0..999 indices that class-conditional checkpoints (CC-IC-GAN) were trained with.
    """
    names = sorted({label for label in labels if label is not None})
    if names and all(name.isdigit() for name in names):
        return {name: int(name) for name in names}
    return {name: i for i, name in enumerate(names)}


def list_sources(source: str) -> pa.Table:
    """Return the sorted source table (source_id, uri, label, label_index, + list-file columns) of a folder or list file."""
    return scan_sources(source).table


def scan_sources(source: str) -> SourceListing:
    """List a folder or list file: the sorted source table and the files skipped as not images.

    A path that is not valid UTF-8 is kept: `uri` holds it readable (bad bytes as \\xNN) and
    `uri_bytes` the exact bytes to open (a column present only when such paths exist).
    """
    fs, path = open_url(source)
    if is_local(fs):
        path = posixpath.normpath(path)  # one spelling per file: "a/../b" is stored as "b"
    try:
        confinement.check(path if is_local(fs) else source, "read", shown=source)  # before it is looked at
    except FileNotFoundError:
        pass  # inside the roots and missing: said below
    if not fs.exists(path):
        raise SourceError(f"source {source!r} does not exist")
    extra = None
    skipped: list[str] = []
    if fs.isdir(path):
        uris, labels, skipped = _list_folder(fs, path)
    elif path.lower().endswith(LIST_FILE_SUFFIXES):
        uris, labels, extra = _list_file(fs, path)
    else:
        raise SourceError(
            f"source {source!r} is neither a folder nor a list file ({', '.join(LIST_FILE_SUFFIXES)})"
        )
    if not uris:
        raise SourceError(f"source {source!r} holds no images (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    order = sorted(range(len(uris)), key=lambda i: uris[i])
    if len(set(uris)) != len(uris):
        raise SourceError(f"source {source!r} lists the same image more than once")
    labels = [None if label is None else display_text(label) for label in labels]
    label_index = label_indices(labels)
    shown = [display_text(uri) for uri in uris]  # valid UTF-8 for the table; differs only for non-UTF-8 names
    columns = {
        "source_id": pa.array(range(len(order)), pa.int64()),
        "uri": pa.array([shown[i] for i in order], pa.string()),
        "label": pa.array([labels[i] for i in order], pa.string()),
        "label_index": pa.array([label_index.get(labels[i]) for i in order], pa.int32()),
    }
    raw = [os.fsencode(uris[i]) if shown[i] != uris[i] else None for i in order]
    if any(r is not None for r in raw):
        columns["uri_bytes"] = pa.array(raw, pa.binary())
    table = pa.table(columns)
    if extra is not None:
        indices = pa.array(order)
        for name in extra.column_names:
            if name not in columns:
                table = table.append_column(name, extra.column(name).take(indices))
    return SourceListing(table=table, skipped=sorted(display_text(name) for name in skipped))


def assign_shards(sources: pa.Table, shard_size: int, seed: int = 0) -> pa.Table:
    """Add the `shard` column, each shard a seeded random sample of the dataset; rows in shard order.

    Listings are sorted by path, and on an ImageFolder tree path order is class order: cutting it
    into runs would give shards of one or two classes, and every training batch would hold ~3
    classes. A seeded permutation makes each shard a random sample, the same on every rerun.
    """
    if shard_size < 1:
        raise ValueError(f"--shard-size must be at least 1, got {shard_size}")
    if "shard" in sources.column_names:
        sources = sources.drop_columns(["shard"])
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A4D])).permutation(sources.num_rows)
    shuffled = sources.take(pa.array(order, pa.int64()))
    shards = pa.array(np.arange(sources.num_rows) // shard_size, pa.int32())
    return shuffled.append_column("shard", shards)


#: An ImageNet synset id, the folder names of ImageNet's train/val trees.
WNID_PATTERN = re.compile(r"^n\d{8}$")


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """Return the 1000 ImageNet-1k wnids in the canonical order (sorted: index i = class i of ImageNet models)."""
    text = resources.files("genview").joinpath("data/imagenet1k_wnids.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def class_conditional_label_indices(sources: pa.Table, model: str) -> pa.Table:
    """Return `sources` with label_index = the ImageNet-1k class a class-conditional model must be given.

    Ranks among the folders present are wrong for a subset of ImageNet (100 wnid folders would be
    conditioned on classes 0..99), so wnid labels map through the canonical 1000-class order and
    integer labels are taken as class indices; any other name is refused (the model cannot know
    which class it means).
    """
    labels = sorted({v for v in sources.column("label").to_pylist() if v is not None})
    if not labels or all(v.isdigit() for v in labels):
        return sources  # integer labels already are their class index (label_indices)
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    if all(WNID_PATTERN.match(v) for v in labels):
        unknown = [v for v in labels if v not in index]
        if unknown:
            raise SourceError(
                f"--model {model}: labels {', '.join(unknown[:5])} are wnids outside ImageNet-1k's 1000 classes; "
                "the model only knows those 1000"
            )
        mapped = [None if v is None else index[v] for v in sources.column("label").to_pylist()]
        column = sources.column_names.index("label_index")
        return sources.set_column(column, "label_index", pa.array(mapped, pa.int32()))
    shown = ", ".join(repr(v) for v in labels[:3]) + (", ..." if len(labels) > 3 else "")
    raise SourceError(
        f"--model {model} conditions on ImageNet-1k class indices, but the labels here ({shown}) are neither "
        "ImageNet wnids (n01440764, ...) nor integers. Give explicit integer class indices: a list file "
        "(.csv/.parquet) with a path column and an integer label column, or folders named by class index"
    )
