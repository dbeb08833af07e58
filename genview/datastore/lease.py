"""Shard leases: many processes (a Slurm array, several machines, CLI + service) share one store's shards.

A lease is a small json file `leases/NNNNNN.GGGGGG.json` (shard, generation) created atomically:
only one process can create a given name, so only one holds a shard at a time. The holder renews
its heartbeat while it works; a lease whose heartbeat is older than its expiry belongs to a dead
process, and the next generation (`GGGGGG + 1`) is created to take the shard over (again atomically:
of two processes that both see the lease expired, one wins). A holder checks, right before it
commits, that no later generation exists; the lease files of a shard are removed once it is done.

Atomic creation: O_CREAT|O_EXCL semantics on local disks (a hard link of a complete temp file, so
a reader never sees a half-written lease), `PutObject` with `If-None-Match: *` on S3.
Expiry compares wall clocks: machines sharing a store need their clocks in sync (NTP) to within
a small fraction of the expiry.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
import threading
import time
import uuid
from typing import Any

import fsspec

from genview.datastore import layout
from genview.datastore.fs import is_local, join, temp_name

#: Seconds a lease lives without a heartbeat; the holder renews it every third of that.
DEFAULT_LEASE_SECONDS = 300.0


class LeaseLost(RuntimeError):
    """The lease of a shard was taken over (its holder stalled past the expiry): the shard is not ours to commit."""


def lease_owner() -> str:
    """This process's name in the leases it holds: host, pid and a random part (pids repeat across hosts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_gone(owner: str) -> bool:
    """True when the lease's holder ran on this machine and its process no longer exists.

    A rerun after a crash on the same machine then takes the shard at once instead of waiting for
    the expiry; a holder on another machine can only be judged by its heartbeat.
    """
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a process of another user holds that pid: alive
    return False


def _on_local_disk(fs: fsspec.AbstractFileSystem) -> bool:
    """Local paths, including subclasses of fsspec's local filesystem under another protocol name."""
    from fsspec.implementations.local import LocalFileSystem

    return is_local(fs) or isinstance(fs, LocalFileSystem)


def _is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return bool({"s3", "s3a"} & set(protocols))


def create_exclusive(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """Create `path` holding `data` only if nothing exists there; return False when it already exists.

    Local: a complete temp file hard-linked to the name (link fails if the name exists). S3: a
    conditional PutObject (If-None-Match: *), which S3 and moto's server refuse with 412 when the key
    exists. Other filesystems get no atomic primitive here: a clear error, not a silent race.
    """
    if _on_local_disk(fs):
        path = fs._strip_protocol(path)
        os.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = temp_name(path)
        with open(tmp, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    if _is_s3(fs):
        try:
            fs.pipe_file(path, data, mode="create")  # s3fs: PutObject with If-None-Match: *
            return True
        except FileExistsError:  # s3fs's translation of 412 PreconditionFailed on If-None-Match
            return False
        except OSError as exc:
            if "PreconditionFailed" in str(exc) or "ConditionalRequestConflict" in str(exc):
                return False
            raise
    raise NotImplementedError(
        f"shard leases need an atomic create on {fs.protocol}: local disks and S3 have one; run one process "
        "per store on this filesystem, or split the shards statically with --shards I/N"
    )


class ShardLeases:
    """The leases this process holds on one store, with a heartbeat thread that renews them."""

    def __init__(self, store, expiry: float = DEFAULT_LEASE_SECONDS, owner: str | None = None):
        self.store = store
        self.fs = store.fs
        self.expiry = float(expiry)
        self.owner = owner or lease_owner()
        self.directory = store.path(layout.LEASES_DIR)
        self.held: dict[int, int] = {}  # shard -> generation held
        self.lost: set[int] = set()  # shards whose lease was taken over while we held it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if _on_local_disk(self.fs):
            self.fs.makedirs(self.directory, exist_ok=True)

    # -- names ---------------------------------------------------------------------------------
    def path(self, shard: int, generation: int) -> str:
        """The lease file of a shard's generation."""
        return join(self.directory, f"{layout.shard_name(shard)}.{generation:06d}.json")

    def generations(self, shard: int) -> list[int]:
        """The lease generations that exist for a shard (a prefix listing: one request on S3)."""
        from genview.datastore.store import _list_prefix

        if not is_local(self.fs):
            self.fs.invalidate_cache(self.directory)
        found = []
        for path in _list_prefix(self.fs, self.directory, layout.shard_name(shard) + "."):
            parts = posixpath.basename(path).split(".")
            if len(parts) == 3 and parts[1].isdigit() and parts[2] == "json":
                found.append(int(parts[1]))
        return sorted(found)

    def _content(self, shard: int, generation: int) -> bytes:
        now = time.time()
        return json.dumps({"shard": shard, "generation": generation, "owner": self.owner, "heartbeat": now,
                           "expires": now + self.expiry}).encode()

    def read(self, shard: int, generation: int) -> dict[str, Any] | None:
        """A lease's content (None when it vanished or cannot be parsed)."""
        try:
            return json.loads(self.fs.cat_file(self.path(shard, generation)))
        except (OSError, ValueError):
            return None

    # -- acquire, renew, release --------------------------------------------------------------
    def try_acquire(self, shard: int) -> bool:
        """Take the shard if nobody holds a live lease on it; True when this process now holds it."""
        generations = self.generations(shard)
        if not generations:
            generation = 0
        else:
            latest = generations[-1]
            content = self.read(shard, latest)
            alive = content is not None and float(content.get("expires", 0)) > time.time()
            if alive and not _holder_gone(str(content.get("owner", ""))):
                return False  # alive (or just created and not readable yet: treated as alive next time)
            if content is None and time.time() - self._created_at(shard, latest) < self.expiry:
                return False
            generation = latest + 1  # its holder stopped renewing: take the shard over
        if not create_exclusive(self.fs, self.path(shard, generation), self._content(shard, generation)):
            return False  # another process created it first
        with self._lock:
            self.held[shard] = generation
        self._ensure_heartbeat()
        return True

    def _created_at(self, shard: int, generation: int) -> float:
        try:
            return float(self.fs.modified(self.path(shard, generation)).timestamp())
        except (OSError, NotImplementedError, AttributeError):
            return 0.0

    def check(self, shard: int) -> None:
        """Raise LeaseLost unless this process still holds the shard (called right before a commit)."""
        with self._lock:
            generation = self.held.get(shard)
            lost = shard in self.lost
        if generation is None or lost or self.generations(shard)[-1:] != [generation]:
            raise LeaseLost(f"shard {layout.shard_name(shard)}: its lease expired and another process took it over")

    def renew(self) -> None:
        """Write a fresh heartbeat into every lease held; a lease taken over in the meantime is marked lost."""
        with self._lock:
            held = dict(self.held)
        for shard, generation in held.items():
            if self.generations(shard)[-1:] != [generation]:
                with self._lock:
                    self.lost.add(shard)
                continue
            data = self._content(shard, generation)
            try:
                if is_local(self.fs):
                    from genview.datastore.fs import write_atomic

                    write_atomic(self.fs, self.path(shard, generation), data)
                else:
                    self.fs.pipe_file(self.path(shard, generation), data)  # one PUT: the object appears whole
            except OSError:
                continue  # a missed heartbeat is retried at the next beat; the expiry leaves room for several

    def release(self, shard: int) -> None:
        """Drop the shard's lease files: all generations once it is done, only our own if it was taken over."""
        with self._lock:
            mine = self.held.pop(shard, None)
            lost = shard in self.lost
            self.lost.discard(shard)
        for generation in self.generations(shard):
            if lost and generation != mine:
                continue  # the process that took the shard over still works on it
            try:
                self.fs.rm(self.path(shard, generation))
            except FileNotFoundError:
                continue

    def release_all(self) -> None:
        """Give back every lease still held and stop the heartbeat."""
        self._stop.set()
        for shard in list(self.held):
            self.release(shard)

    def _ensure_heartbeat(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="genview-lease-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.expiry / 3):
            self.renew()
