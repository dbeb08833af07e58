"""The one place where genview opens a local file under a root policy (the job service's roots).

A name check (realpath, then compare) is not enough: a non-UTF-8 name is checked by its escaped text,
a symlink can be swapped in between the check and the open, and a list file can name any path. So a
file is opened by walking its path from "/" one component at a time, as bytes, each component opened
with O_NOFOLLOW relative to the directory descriptor before it; a symlink is read (readlink at that
directory) and its target walked the same way. The file opened is the one whose resolved path was
checked against the roots at that moment: there is nothing to swap afterwards.

Where the policy comes from: the job worker installs it (`install`) before it runs a job; it is kept
in the environment variable GENVIEW_CONFINEMENT so that processes the worker starts (Ray actors get it
passed explicitly) apply it too. With no policy (plain `genview generate` on the command line) files
are opened as they always were.

Errors about a path outside the roots never say whether it exists or what it is: the same message for
an outside file, an outside folder and nothing at all, so failed rows and job errors are no oracle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from typing import Iterator, Sequence

#: The policy of this process and its children (JSON: {"read": [...], "weights": [...], "output": [...]}).
ENV = "GENVIEW_CONFINEMENT"
#: Symlinks followed in one path before giving up (Linux's own limit).
MAX_SYMLINKS = 40
#: What each kind of root is called in messages.
_WHAT = {"read": "source", "weights": "source or model", "output": "output"}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


class OutsideRoots(PermissionError, ValueError):
    """A path that resolves (now, at open time) to outside the allowed roots.

    Also a ValueError (like io.UnsupportedOperation): a user error, which the CLI reports as its
    message, not as "cannot write".

    The message names only the path as given and the kind of root; never where a symlink leads, and
    never whether the outside file exists.
    """

    def __init__(self, shown: str, kind: str):
        super().__init__(errno.EACCES, f"{shown!r} is outside your {_WHAT.get(kind, kind)} roots (or does not exist)")
        self.shown = shown
        self.kind = kind

    def __str__(self) -> str:
        return str(self.strerror)


@dataclasses.dataclass(frozen=True)
class Policy:
    """The roots of one job: sources and list files (`read`), weights (`weights`), the store (`output`).

    Local roots are canonical real paths; URL roots (s3://bucket/prefix) are prefixes. None: that
    kind of file is not confined (a worker started without --weight-root, as documented there).
    """

    read: tuple[str, ...] | None = None
    weights: tuple[str, ...] | None = None
    output: tuple[str, ...] | None = None

    def roots(self, kind: str) -> tuple[str, ...] | None:
        """The roots of one kind ("read", "weights" or "output"); None when that kind is not confined."""
        return getattr(self, kind)

    def to_json(self) -> str:
        """The form kept in the environment."""
        return json.dumps({kind: None if getattr(self, kind) is None else list(getattr(self, kind))
                           for kind in ("read", "weights", "output")})

    @classmethod
    def from_json(cls, text: str) -> "Policy":
        """Parse the environment form."""
        data = json.loads(text)
        return cls(**{kind: None if data.get(kind) is None else tuple(data[kind]) for kind in ("read", "weights", "output")})


def _roots_of(kind: str) -> tuple[str, ...] | None:
    """The active policy's roots of `kind`, None when files of that kind are opened unconfined."""
    policy = active()
    return None if policy is None else policy.roots(kind)


def install(policy: Policy | None) -> None:
    """Make `policy` the policy of this process and of the processes it starts (None: no policy)."""
    if policy is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = policy.to_json()


def active() -> Policy | None:
    """The policy in force in this process, None when files are opened without roots."""
    text = os.environ.get(ENV)
    return Policy.from_json(text) if text else None


def display(path: str | bytes | os.PathLike) -> str:
    """A path as valid UTF-8 text for messages: undecodable bytes become \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_url(path: str | bytes) -> bool:
    return isinstance(path, str) and _URL.match(path) is not None and not path.startswith("file://")


def _local_bytes(path: str | bytes | os.PathLike) -> bytes:
    """A local path as the bytes the kernel sees (non-UTF-8 names kept exactly), file:// stripped."""
    raw = os.fsencode(path)
    if raw.startswith(b"file://"):
        raw = raw[len(b"file://"):]
    if not raw.startswith(b"/"):
        raw = os.path.join(os.fsencode(os.getcwd()), raw)
    return raw


def _under(path: bytes, root: bytes) -> bool:
    return path == root or path.startswith(root.rstrip(b"/") + b"/")


def _inside(parts: list[bytes], roots: Sequence[bytes]) -> bool:
    path = b"/" + b"/".join(parts)
    return any(_under(path, root) for root in roots)


def _lexical(parts: list[bytes], rest: list[bytes]) -> list[bytes]:
    """Where the walk would end if nothing left were a symlink: resolved parts + the rest, '..' applied."""
    out = list(parts)
    for name in rest:
        if name == b"..":
            if out:
                out.pop()
        elif name not in (b"", b"."):
            out.append(name)
    return out


def _local_roots(roots: Sequence[str]) -> list[bytes]:
    return [os.fsencode(r) for r in roots if not _is_url(r)]


def check_url(url: str, roots: Sequence[str], kind: str) -> str:
    """Refuse an object-store URL outside the URL roots (no symlinks there: a prefix check is exact)."""
    rest = url.split("://", 1)[1]
    if any(seg in ("..", ".") for seg in rest.split("/")) or "::" in url:
        raise OutsideRoots(url, kind)
    for root in roots:
        if _is_url(root) and (url.rstrip("/") == root.rstrip("/") or url.startswith(root.rstrip("/") + "/")):
            return url
    raise OutsideRoots(url, kind)


def open_fd(path: str | bytes | os.PathLike, roots: Sequence[str], kind: str = "read",
            flags: int = os.O_RDONLY, shown: str | None = None) -> tuple[int, bytes]:
    """Open a local path so that the file opened is inside `roots`; return (descriptor, its real path).

    Each component is opened with O_NOFOLLOW relative to the directory before it; symlinks are
    resolved here, one hop at a time (at most MAX_SYMLINKS), and the final file is opened only when
    its resolved path lies under a root. `flags` are those of the final open (O_DIRECTORY for a
    folder; O_NONBLOCK is added so a FIFO planted in a root cannot hang a worker).
    """
    shown = shown if shown is not None else display(path)
    root_bytes = _local_roots(roots)
    todo = [p for p in _local_bytes(path).split(b"/")]
    todo.reverse()  # a stack: the next component last
    parts: list[bytes] = []  # the resolved (real) path so far
    fds: list[int] = [os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)]
    hops = 0

    def refuse_or_raise(exc: OSError, name: bytes) -> None:
        # Inside a root the real error helps the user; outside, it would tell what exists there.
        if _inside(_lexical(parts + [name], list(reversed(todo))), root_bytes):
            raise type(exc)(exc.errno, exc.strerror, shown) from None
        raise OutsideRoots(shown, kind) from None

    try:
        while todo:
            name = todo.pop()
            if name in (b"", b"."):
                continue
            if name == b"..":
                if parts:
                    parts.pop()
                    os.close(fds.pop())
                continue
            last = not any(p not in (b"", b".") for p in todo)
            if last and not _inside(parts + [name], root_bytes):
                # Not opened at all: outside (unless it is a symlink back in, which is read, not opened).
                try:
                    target = os.readlink(name, dir_fd=fds[-1])
                except OSError:
                    raise OutsideRoots(shown, kind) from None
                hops = _follow(target, todo, parts, fds, hops, shown, kind)
                continue
            try:
                if last:
                    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fds[-1])
                else:
                    fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fds[-1])
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    refuse_or_raise(exc, name)
                try:
                    target = os.readlink(name, dir_fd=fds[-1])
                except OSError:
                    refuse_or_raise(exc, name)
                hops = _follow(target, todo, parts, fds, hops, shown, kind)
                continue
            if last and stat.S_ISLNK(os.fstat(fd).st_mode):
                # O_PATH | O_NOFOLLOW opens a symlink itself instead of failing: follow it like the rest.
                os.close(fd)
                try:
                    target = os.readlink(name, dir_fd=fds[-1])
                except OSError as exc:
                    refuse_or_raise(exc, name)
                hops = _follow(target, todo, parts, fds, hops, shown, kind)
                continue
            if last:
                parts.append(name)
                real = b"/" + b"/".join(parts)
                _check_proc(fd, root_bytes, shown, kind)
                return fd, real
            fds.append(fd)
            parts.append(name)
        # The path named a directory that is a root or above one ("/", "/data/"): open it as such.
        if not _inside(parts, root_bytes):
            raise OutsideRoots(shown, kind)
        fd = os.open(".", flags | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fds[-1]) if len(fds) > 1 else \
            os.open("/", flags | os.O_CLOEXEC)
        return fd, b"/" + b"/".join(parts)
    finally:
        for fd in fds:
            os.close(fd)


def _follow(target: bytes, todo: list[bytes], parts: list[bytes], fds: list[int], hops: int, shown: str,
            kind: str) -> int:
    """Put a symlink's target in front of what is left to walk (absolute: from "/" again)."""
    hops += 1
    if hops > MAX_SYMLINKS:
        raise OutsideRoots(shown, kind)
    if target.startswith(b"/"):
        while len(fds) > 1:
            os.close(fds.pop())
        parts.clear()
    todo.extend(reversed(target.split(b"/")))
    return hops


def _check_proc(fd: int, roots: Sequence[bytes], shown: str, kind: str) -> None:
    """Belt and braces: the kernel's own name of the opened file must be inside a root too."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}".encode())
    except OSError:
        return  # no /proc (not Linux): the walk above is the check
    if real.endswith(b" (deleted)") or not any(_under(real, root) for root in roots):
        os.close(fd)
        raise OutsideRoots(shown, kind)


def open_binary(path: str | bytes | os.PathLike, kind: str = "read", shown: str | None = None):
    """Open a local file for reading under the active policy's `kind` roots (plain open without a policy)."""
    roots = _roots_of(kind)
    if roots is None:
        return open(_local_bytes(path), "rb")
    fd, _ = open_fd(path, roots, kind, shown=shown)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(errno.EISDIR, f"{shown or display(path)!r} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | bytes | os.PathLike, kind: str = "read", shown: str | None = None) -> bytes:
    """All bytes of a local file opened under the active policy."""
    with open_binary(path, kind, shown) as fh:
        return fh.read()


def check(path: str | bytes | os.PathLike, kind: str = "read", shown: str | None = None) -> None:
    """Refuse `path` (a URL or a local file or folder) when it resolves outside the active policy's roots.

    For listings and up-front checks: the local path is opened (O_PATH) the way reads open it, so a
    non-UTF-8 name is checked by its bytes and every symlink is followed. Files are still opened
    through `open_binary` / `read_bytes` when read: this check alone would be check-then-use.
    """
    roots = _roots_of(kind)
    if roots is not None:
        check_with(path, roots, kind, shown)


def check_with(path: str | bytes | os.PathLike, roots: Sequence[str], kind: str, shown: str | None = None) -> None:
    """`check` against explicit roots (the worker's up-front listing check)."""
    if _is_url(path):
        check_url(str(path), roots, kind)
        return
    fd, _ = open_fd(path, roots, kind, flags=os.O_PATH, shown=shown)
    os.close(fd)


@contextlib.contextmanager
def confined_path(path: str | None, kind: str = "weights") -> Iterator[str | None]:
    """Yield a path a loader (torch.load, diffusers) may open by name, whose files were opened confined.

    Without a policy, or for a URL/hub id, `path` itself. With one, each file (recursively for a
    folder) is opened through `open_fd` now and the loader gets a private folder of links to
    /proc/self/fd/N: whatever it opens is the very file that was checked, even if the weights
    folder is changed while it loads. The descriptors and the folder go when the block ends.
    """
    roots = _roots_of(kind)
    if roots is None or path is None or _is_url(path) or not os.path.isdir("/proc/self/fd"):
        if roots is not None and path is not None:
            check_with(path, roots, kind)  # a URL, or no /proc: at least the walk's check
        yield path
        return
    fds: list[int] = []
    staging = tempfile.mkdtemp(prefix="genview-confined-")
    try:
        fd, real = open_fd(path, roots, kind, flags=os.O_RDONLY, shown=path)
        fds.append(fd)
        name = os.path.basename(os.fsdecode(real)) or "root"
        target = os.path.join(staging, name)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            _mirror(real, target, roots, kind, fds, path)
        else:
            os.symlink(f"/proc/{os.getpid()}/fd/{fd}", target)
        yield target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for fd in fds:
            os.close(fd)


def _mirror(real: bytes, target: str, roots: Sequence[str], kind: str, fds: list[int], shown: str,
            depth: int = 0) -> None:
    """Recreate folder `real` under `target` as links to descriptors of its (confined) files."""
    if depth > MAX_SYMLINKS:
        raise OutsideRoots(shown, kind)
    os.mkdir(target)
    for entry in sorted(os.listdir(real)):
        child = os.path.join(real, entry)
        fd, child_real = open_fd(child, roots, kind, flags=os.O_RDONLY,
                                 shown=os.path.join(shown, os.fsdecode(entry)))
        fds.append(fd)
        destination = os.path.join(os.fsencode(target), entry)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            _mirror(child_real, os.fsdecode(destination), roots, kind, fds, os.path.join(shown, os.fsdecode(entry)),
                    depth + 1)
        else:
            os.symlink(f"/proc/{os.getpid()}/fd/{fd}".encode(), destination)


class ConfinedWrite:
    """A new file created in a folder opened under the output roots, and renamed inside that same folder.

    The folder is opened once (`open_fd`, O_DIRECTORY); the file is created relative to that descriptor
    with O_CREAT | O_EXCL | O_NOFOLLOW, and `commit` renames it relative to the same descriptor: a
    store folder swapped for a symlink meanwhile cannot redirect the write or the rename.
    """

    def __init__(self, tmp_path: str, roots: Sequence[str]):
        parent, self.name = os.path.split(_local_bytes(tmp_path))
        self.dir_fd, _ = open_fd(parent, roots, "output", flags=os.O_RDONLY | os.O_DIRECTORY,
                                 shown=display(os.path.dirname(tmp_path)))
        try:
            fd = os.open(self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=self.dir_fd)
        except BaseException:
            os.close(self.dir_fd)
            raise
        self.file = os.fdopen(fd, "wb")

    def commit(self, final_path: str) -> None:
        """Rename the (closed) file to `final_path`'s name in the same folder."""
        try:
            os.replace(self.name, os.path.basename(_local_bytes(final_path)), src_dir_fd=self.dir_fd,
                       dst_dir_fd=self.dir_fd)
        finally:
            os.close(self.dir_fd)

    def discard(self) -> None:
        """Close and remove the file (a failed or aborted write); never raises."""
        with contextlib.suppress(OSError, ValueError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.name, dir_fd=self.dir_fd)
        with contextlib.suppress(OSError):
            os.close(self.dir_fd)


def confined_write(tmp_path: str) -> ConfinedWrite | None:
    """A ConfinedWrite for a local temp file under the active output roots; None when outputs are not confined."""
    roots = _roots_of("output")
    return None if roots is None or _is_url(tmp_path) else ConfinedWrite(tmp_path, roots)


def remove(path: str) -> bool:
    """Remove a local store file under the active output roots (unlink at its confined folder).

    Returns False when outputs are not confined (the caller removes it as before).
    """
    roots = _roots_of("output")
    if roots is None or _is_url(path):
        return False
    parent, name = os.path.split(_local_bytes(path))
    dir_fd, _ = open_fd(parent, roots, "output", flags=os.O_RDONLY | os.O_DIRECTORY, shown=display(path))
    try:
        with contextlib.suppress(FileNotFoundError):  # already gone: nothing to remove
            os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return True
