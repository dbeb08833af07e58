"""The one tar reader of genview (torch-free): stream a shard's members, or index them by byte offset.

It reads ustar, pax and GNU long names. The trainer client streams samples through ``iter_tar``,
the map-style dataset reads one sample by ``index_samples``'s byte range, ``shardcheck`` and the
store reader walk shards with it, and ``index_members`` gives each member's data offset so a
server can answer with one range read (``read_member``).

Python's tarfile parses each header through several layers (about 0.1 ms per member with pax
headers), which made reading a shard slower than opening loose files. Shards are plain archives
of regular files, so this reads each header block directly: one read for the header, one for the
data and its padding. Header checksums are verified, so damage is found, not misread.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import fsspec

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\0", b"7")
_META = (b"x", b"g", b"L", b"K")


class TarFormatError(ValueError):
    """Raised for a damaged or truncated tar: bad header checksum, short read, bad number field."""


@dataclass(frozen=True)
class TarMember:
    """A regular file in a tar: name, where its header chain starts, where its data starts, size, data."""

    name: str
    start: int  # offset of its first header (pax / long-name headers included)
    data_offset: int
    size: int
    data: bytes | None


def _number(field: bytes, what: str, offset: int) -> int:
    """Parse a tar number field: octal ASCII, or base-256 when the high bit of the first byte is set."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] & 0x40 else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError(f"bad {what} field {field!r} in tar header at byte {offset}") from None


def _read_exact(stream: BinaryIO, n: int, offset: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise TarFormatError(f"tar truncated: wanted {n} bytes at byte {offset}, got {len(data)}")
    return data


def _pax_records(data: bytes, offset: int) -> dict[str, str]:
    """Parse pax extended-header records ("LEN key=value\\n")."""
    records, at = {}, 0
    while at < len(data):
        space = data.find(b" ", at)
        if space < 0:
            break
        try:
            length = int(data[at:space])
        except ValueError:
            raise TarFormatError(f"bad pax record in tar header at byte {offset}") from None
        if length <= 0:
            break
        key, _, value = data[space + 1 : at + length - 1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        at += length
    return records


def iter_tar(stream: BinaryIO, *, read_data: bool = True, seekable: bool = False) -> Iterator[TarMember]:
    """Yield the regular files of a tar stream in order.

    ``read_data=False`` skips file contents (seeking over them when ``seekable``), for indexing.
    The archive ends at a zero block or at a clean end of stream on a block boundary; anything
    else (short read, bad checksum) raises TarFormatError.
    """
    pos = 0
    chain_start: int | None = None
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        header = stream.read(BLOCK)
        if not header or header == _ZERO_BLOCK:
            if chain_start is not None:
                raise TarFormatError(f"tar ends inside a member's headers at byte {pos}")
            return
        if len(header) != BLOCK:
            raise TarFormatError(f"tar truncated: partial header at byte {pos}")
        stored = _number(header[148:156], "checksum", pos)
        if stored != sum(header[:148]) + 256 + sum(header[156:]):
            raise TarFormatError(f"tar header checksum mismatch at byte {pos} (damaged archive)")
        if chain_start is None:
            chain_start = pos
        pos += BLOCK
        typeflag = header[156:157]
        size = _number(header[124:136], "size", pos - BLOCK)
        if typeflag in _META:
            padded = -(-size // BLOCK) * BLOCK
            data = _read_exact(stream, padded, pos)[:size]
            pos += padded
            if typeflag == b"x":
                pax = _pax_records(data, pos)
            elif typeflag == b"L":
                long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
            continue
        if "size" in pax:
            size = int(pax["size"])
        padded = -(-size // BLOCK) * BLOCK
        name = pax.get("path") or long_name
        if name is None:
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            if header[257:263] == b"ustar\0":  # POSIX ustar: a prefix field extends the name
                prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
                name = f"{prefix}/{name}" if prefix else name
        data_offset = pos
        if typeflag in _REGULAR and read_data:
            data = _read_exact(stream, padded, pos)[:size]
        else:
            data = None
            if padded:
                if seekable:
                    # Seek to the last byte and read it: a seek alone would not notice truncation.
                    stream.seek(padded - 1, 1)
                    _read_exact(stream, 1, pos + padded - 1)
                else:
                    _read_exact(stream, padded, pos)
        if typeflag in _REGULAR:
            yield TarMember(name, chain_start, data_offset, size, data)
        pos += padded
        chain_start, long_name, pax = None, None, {}


@dataclass(frozen=True)
class MemberEntry:
    """Where a member's bytes are in its tar: name, data offset, size (read [offset, offset + size))."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class SampleEntry:
    """Where a sample (the contiguous members sharing a key) is in its tar: one range read returns it as a tar."""

    key: str
    start: int
    length: int


def split_member(name: str) -> tuple[str, str]:
    """Return (key, suffix) of a member name as webdataset splits it: at the first dot of the basename."""
    directory, base = posixpath.split(name)
    key, _, suffix = base.partition(".")
    return (posixpath.join(directory, key) if directory else key), suffix


def index_members(stream: BinaryIO, *, seekable: bool = True) -> list[MemberEntry]:
    """Return (name, data offset, size) of every regular file of a tar, reading headers only."""
    return [MemberEntry(m.name, m.data_offset, m.size) for m in iter_tar(stream, read_data=False, seekable=seekable)]


def index_samples(stream: BinaryIO, *, seekable: bool = True) -> list[SampleEntry]:
    """Return (key, byte start, byte length) of every sample of a tar, reading headers only.

    The range of a sample covers its members' headers and padded data, so ``iter_tar`` over the
    bytes of that range yields the sample's members.
    """
    entries: list[SampleEntry] = []
    key, start, end = None, 0, 0
    for member in iter_tar(stream, read_data=False, seekable=seekable):
        member_key = split_member(member.name)[0]
        member_end = member.data_offset + -(-member.size // BLOCK) * BLOCK
        if member_key == key:
            end = member_end
            continue
        if key is not None:
            entries.append(SampleEntry(key, start, end - start))
        key, start, end = member_key, member.start, member_end
    if key is not None:
        entries.append(SampleEntry(key, start, end - start))
    return entries


def index_tar(fs: fsspec.AbstractFileSystem, path: str) -> list[MemberEntry]:
    """Return the member index of a tar on any fsspec filesystem (local path or object store)."""
    with fs.open(path, "rb") as stream:
        return index_members(stream)


def read_member(fs: fsspec.AbstractFileSystem, path: str, entry: MemberEntry) -> bytes:
    """Return one member's bytes by its index entry: a single range read."""
    data = fs.cat_file(path, start=entry.offset, end=entry.offset + entry.size)
    if len(data) != entry.size:
        raise TarFormatError(f"{path}: member {entry.name} cut short ({len(data)} of {entry.size} bytes)")
    return data


def iter_samples(stream: BinaryIO) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {suffix: bytes}) for each sample of a tar in order (members grouped by key)."""
    key, members = None, {}
    for member in iter_tar(stream):
        member_key, suffix = split_member(member.name)
        if member_key != key and key is not None:
            yield key, members
            members = {}
        key = member_key
        members[suffix] = member.data
    if key is not None:
        yield key, members
