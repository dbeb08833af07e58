"""Writer: one shard's tar, manifest fragment and done marker, committed in that order."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from typing import Any

from genview import confinement
from genview.datastore import layout
from genview.datastore.fs import commit, is_local, temp_name, write_atomic
from genview.datastore.manifest import manifest_bytes, manifest_table
from genview.datastore.shardcheck import SPEC_DIGEST, seal_marker
from genview.datastore.store import Store
from genview.datastore.summary import classes_bytes, index_bytes, index_path, index_table, summarize_fragment, summary_path
from genview.datastore.tarindex import TarMember, iter_tar

#: Fixed tar member mtime so the same views give the same tar bytes on every run. An integer: a
#: float mtime makes tarfile add a pax header (a 1 KB `mtime=0.0` record) before every member.
TAR_MTIME = 0


class _HashingWriter:
    """File-object wrapper that counts and hashes the bytes written through it."""

    def __init__(self, fh):
        self.fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha256.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self):
        return self.fh.flush()


@contextlib.contextmanager
def _naming(path: str):
    """Give an OSError without a file name (a full disk while streaming the tar) the name of the file written."""
    try:
        yield
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), path) from exc


class _SampleCapture:
    """Stands between tarfile and its output: keeps the bytes of the sample being written.

    tarfile buffers what reaches the file, so file positions do not tell where a member starts;
    the bytes tarfile hands its stream do. They are parsed by genview's own tar reader, so the
    member index is exactly what a reader of the tar would find.
    """

    def __init__(self, inner):
        self.inner = inner
        self.buffer: bytearray | None = None

    def write(self, data):
        if self.buffer is not None:
            self.buffer += data
        return self.inner.write(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class ShardWriter:
    """Write one shard so that it is either wholly there (tar + manifest + done marker) or not at all.

    The tar is streamed to a hidden temporary name and moved to its final name only on `commit`;
    the stats json is written last and is the done marker that resume looks for.
    """

    def __init__(self, store: Store, shard: int):
        self.store = store
        self.shard = shard
        self.final_tar = layout.shard_tar(store.root, shard)
        self.tmp_tar = temp_name(self.final_tar)
        # Under a job's output roots the temp tar is created (and later renamed) in its confined folder.
        self._confined = confinement.confined_write(self.tmp_tar) if is_local(store.fs) else None
        self._fh = self._confined.file if self._confined is not None else store.fs.open(self.tmp_tar, "wb")
        self._hashing = _HashingWriter(self._fh)
        import webdataset as wds  # here, not at module top: webdataset imports torch, and readers of genview.datastore must not

        self._tar = wds.TarWriter(self._hashing, encoder=False, mtime=TAR_MTIME)
        self._capture = _SampleCapture(self._tar.tarstream.fileobj)
        self._tar.tarstream.fileobj = self._capture
        self.index: list[TarMember] = []  # every member's place in the tar, for stats/NNNNNN.index.parquet
        self.rows: list[dict[str, Any]] = []
        self.samples = 0
        self.members = 0
        self._closed = False

    def write_sample(self, key: str, members: dict[str, bytes]) -> None:
        """Append one sample: members maps extension (e.g. 'v0.jpg') to bytes."""
        if "." in key:
            raise ValueError(f"sample key {key!r} contains a dot; webdataset splits keys at the first dot")
        start = self._tar.tarstream.offset
        self._capture.buffer = bytearray()
        try:
            with _naming(self.final_tar):
                self._tar.write({"__key__": key, **members})
            written = bytes(self._capture.buffer)
        finally:
            self._capture.buffer = None
        for member in iter_tar(io.BytesIO(written), read_data=False, seekable=True):
            self.index.append(TarMember(member.name, start + member.start, start + member.data_offset, member.size, None))
        self.samples += 1
        self.members += len(members)

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Queue manifest rows (views and failed sources) for this shard."""
        self.rows.extend(rows)

    def commit(self, stats: dict[str, Any]) -> dict[str, Any]:
        """Publish the tar, the manifest fragment, the summary and member index, then the stats json (the done marker)."""
        with _naming(self.final_tar):
            self._tar.close()
            self._fh.close()
        self._closed = True
        fs, root = self.store.fs, self.store.root
        if self._confined is not None:
            self._confined.commit(self.final_tar)
        else:
            commit(fs, self.tmp_tar, self.final_tar)
        table = manifest_table(self.rows)
        fragment = manifest_bytes(table)
        write_atomic(fs, layout.shard_manifest(root, self.shard), fragment)
        summary, classes = summarize_fragment(table, self.shard)
        write_atomic(fs, summary_path(root, self.shard), classes_bytes(classes))
        write_atomic(fs, index_path(root, self.shard), index_bytes(index_table(self.index)))
        stats = {
            "shard": self.shard,
            "tar": f"{layout.SHARDS_DIR}/{layout.shard_name(self.shard)}.tar",
            "tar_bytes": self._hashing.size,
            "tar_sha256": self._hashing.sha256.hexdigest(),
            "samples": self.samples,
            "tar_members": self.members,
            # Which spec made the shard: lets a store that lost genview.json be re-adopted only by it.
            SPEC_DIGEST: self.store.spec_digest(),
            "summary": summary,  # for readers: counts, histogram, worst views; names the two files above
            **stats,
        }
        stats = seal_marker(stats, fragment)
        write_atomic(fs, self.store.marker_path(self.shard), (json.dumps(stats, indent=2, sort_keys=True) + "\n").encode())
        return stats

    def abort(self) -> None:
        """Drop the temporary tar of a shard that will not be committed."""
        try:
            if not self._closed:
                # Closing flushes buffered bytes: on a full disk that fails too, and must not keep
                # the temp file from being removed below.
                with contextlib.suppress(OSError, ValueError):
                    self._tar.close()
                with contextlib.suppress(OSError, ValueError):
                    self._fh.close()
        finally:
            self._closed = True
            if self._confined is not None:
                self._confined.discard()
            elif self.store.fs.exists(self.tmp_tar):
                self.store.fs.rm(self.tmp_tar)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
