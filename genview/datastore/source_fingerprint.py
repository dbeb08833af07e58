"""A source's fingerprint: what lets a rerun know, without listing the source, that it is unchanged.

genview.json records it when the listing is frozen, and again whenever a rerun lists the source and
finds the same images (or extends the store):

- a list file (local or object store): its size and sha256, under `source_file`;
- a local folder: the mtime of every directory of the tree, and when they were taken, under
  `source_folder`. Adding, removing or renaming an entry changes its directory's mtime, and a new
  subdirectory changes its parent's, so the same mtimes mean the same names (git's untracked cache
  trusts directory mtimes the same way). Checking costs one stat per directory.

Object-store folders have no directory mtimes: they get no fingerprint and are listed at every rerun.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import time
from typing import Any

from genview import confinement
from genview.datastore.fs import is_local, open_url
from genview.datastore.sources import LIST_FILE_SUFFIXES

#: genview.json key of a list file's {size, sha256}.
LIST_FILE_KEY = "source_file"
#: genview.json key of a local folder's {taken_ns, directories: {relative path: st_mtime_ns}}.
FOLDER_KEY = "source_folder"

#: A directory whose mtime is this close to when the fingerprint was taken (or later) is not trusted:
#: on a file system with coarse timestamps (FAT: 2 s, ext4: the kernel tick) a change made just after
#: the fingerprint could leave the mtime it recorded as it was.
RACY_NS = 2_000_000_000

#: A tree with more directories gets no fingerprint (always listed): genview.json stays small.
MAX_DIRECTORIES = 50_000


def list_file_fingerprint(source: str) -> dict[str, Any] | None:
    """Size and sha256 of a list-file source (None for a folder): a rerun with the same bytes need not list it."""
    fs, path = open_url(source)
    if not path.lower().endswith(LIST_FILE_SUFFIXES) or not fs.isfile(path):
        return None
    sha = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            sha.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": sha.hexdigest()}


def _local_folder(source: str) -> str | None:
    """The local path of a folder source, checked against the job's source roots; None otherwise."""
    fs, path = open_url(source)
    if not is_local(fs):
        return None
    path = posixpath.normpath(path)
    try:
        confinement.check(path, "read", shown=source)  # a folder outside the roots is refused (OutsideRoots)
    except FileNotFoundError:
        return None
    return path if os.path.isdir(path) else None


def directory_mtimes(root: str) -> dict[str, int] | None:
    """st_mtime_ns of every directory under root ("." for root itself); None when the tree can't be trusted.

    None for a tree with a symlinked directory (a change behind the link shows in no mtime here), one
    that can't be read or stat'ed, or one with more than MAX_DIRECTORIES directories. Hidden entries
    are never sources: their contents are not walked (their names show in their parent's mtime).
    """
    mtimes: dict[str, int] = {}
    pending = ["."]
    try:
        while pending:
            rel = pending.pop()
            path = root if rel == "." else os.path.join(root, rel)
            # The mtime before the entries: an entry added after the stat leaves a newer mtime.
            mtimes[rel] = os.stat(path).st_mtime_ns
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_symlink():
                        if entry.is_dir():  # follows the link
                            return None
                    elif entry.is_dir(follow_symlinks=False):
                        pending.append(entry.name if rel == "." else f"{rel}/{entry.name}")
            if len(mtimes) + len(pending) > MAX_DIRECTORIES:
                return None
    except OSError:
        return None
    return mtimes


def folder_fingerprint(root: str) -> dict[str, Any] | None:
    """The directory mtimes of a local folder and when they were taken (before the walk)."""
    taken = time.time_ns()
    directories = directory_mtimes(root)
    return None if directories is None else {"taken_ns": taken, "directories": directories}


def source_fingerprint(source: str) -> dict[str, Any]:
    """The fingerprint facts genview.json records for a source (each key None where it does not apply).

    Taken before the source is listed, so that a change made while it lists shows at the next rerun.
    """
    root = _local_folder(source)
    return {LIST_FILE_KEY: list_file_fingerprint(source) if root is None else None,
            FOLDER_KEY: folder_fingerprint(root) if root is not None else None}


def folder_unchanged(root: str, recorded: Any) -> bool:
    """True when every recorded directory still has its mtime and none was racy when recorded."""
    try:
        taken = int(recorded["taken_ns"])
        directories = dict(recorded["directories"])
        if not directories or any(int(mtime) >= taken - RACY_NS for mtime in directories.values()):
            return False
        for rel, mtime in directories.items():
            info = os.stat(root if rel == "." else os.path.join(root, rel))
            if not stat.S_ISDIR(info.st_mode) or info.st_mtime_ns != int(mtime):
                return False
    except (OSError, KeyError, TypeError, ValueError, AttributeError):
        return False  # gone, unreadable, or a header edited by hand: list the source again
    return True


def source_unchanged(source: str, header: dict[str, Any]) -> bool:
    """True when the fingerprint genview.json recorded shows the source unchanged: no need to list it.

    A list file is hashed again; a local folder costs one stat per recorded directory. A source with
    no fingerprint recorded (an object-store folder, a store made before fingerprints) is not known.
    """
    root = _local_folder(source)
    if root is not None:
        return bool(header.get(FOLDER_KEY)) and folder_unchanged(root, header[FOLDER_KEY])
    return bool(header.get(LIST_FILE_KEY)) and list_file_fingerprint(source) == header[LIST_FILE_KEY]
