"""The fast tar reader agrees with tarfile on every format and catches damage."""

from __future__ import annotations

import io
import tarfile

import pytest

from genview.datastore.tarindex import TarFormatError, iter_tar

FILES = {
    "0000000001.src.png": b"\x89PNG" + bytes(range(256)) * 3,
    "0000000001.json": b"{}",
    "0000000002.v0.jpg": b"",
    "a" * 120 + "/deep/" + "b" * 110 + ".v1.jpg": b"x" * 513,  # needs a long name in every format
    "0000000003.caf\u00e9.txt": b"unicode name",
}


def make_tar(fmt: int, files=FILES) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        info = tarfile.TarInfo("somedir")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_matches_tarfile(fmt):
    raw = make_tar(fmt)
    members = list(iter_tar(io.BytesIO(raw)))
    assert {m.name: m.data for m in members} == FILES
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        reference = [i for i in tar.getmembers() if i.isreg()]
    assert [(m.data_offset, m.size) for m in members] == [(i.offset_data, i.size) for i in reference]
    assert [m.start for m in members] == [i.offset for i in reference]


def test_ustar_prefix_names():
    files = {"p" * 90 + "/" + "n" * 90 + ".json": b"1"}
    members = list(iter_tar(io.BytesIO(make_tar(tarfile.USTAR_FORMAT, files))))
    assert [m.name for m in members] == list(files)


def test_header_only_scan_seeks(tmp_path):
    path = tmp_path / "a.tar"
    path.write_bytes(make_tar(tarfile.PAX_FORMAT))
    with open(path, "rb") as fh:
        members = list(iter_tar(fh, read_data=False, seekable=True))
    assert [m.size for m in members] == [len(v) for v in FILES.values()] and all(m.data is None for m in members)


@pytest.mark.parametrize("read_data,seekable", [(True, False), (False, True), (False, False)])
def test_truncation_is_detected(read_data, seekable):
    raw = make_tar(tarfile.PAX_FORMAT)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        cut = [i for i in tar.getmembers() if i.isreg()][-1].offset_data + 5
    with pytest.raises(TarFormatError, match="truncated"):
        list(iter_tar(io.BytesIO(raw[:cut]), read_data=read_data, seekable=seekable))


def test_damaged_header_is_detected():
    raw = bytearray(make_tar(tarfile.GNU_FORMAT))
    raw[512 + 20] ^= 0xFF  # a byte of the second header's name
    with pytest.raises(TarFormatError, match="checksum"):
        list(iter_tar(io.BytesIO(bytes(raw))))


def test_archive_without_end_blocks_ends_cleanly():
    raw = make_tar(tarfile.GNU_FORMAT)
    body = raw.rstrip(b"\0")
    body += bytes(-len(body) % 512)
    assert len(list(iter_tar(io.BytesIO(body)))) == len(FILES)


def test_member_index_gives_byte_ranges_a_server_can_read(tmp_path):
    import fsspec

    from genview.datastore.tarindex import index_tar, read_member

    path = tmp_path / "shard.tar"
    path.write_bytes(make_tar(tarfile.PAX_FORMAT))
    fs = fsspec.filesystem("file")
    entries = index_tar(fs, str(path))
    assert [e.name for e in entries] == list(FILES)
    raw = path.read_bytes()
    for entry in entries:
        assert raw[entry.offset : entry.offset + entry.size] == FILES[entry.name]
        assert read_member(fs, str(path), entry) == FILES[entry.name]


def test_sample_index_ranges_hold_whole_samples():
    from genview.datastore.tarindex import index_samples, iter_samples, split_member

    files = {"0001.src.png": b"a" * 700, "0001.json": b"{}", "0002.src.png": b"b", "0002.v0.jpg": b"c" * 1025}
    raw = make_tar(tarfile.GNU_FORMAT, files)
    entries = index_samples(io.BytesIO(raw))
    assert [e.key for e in entries] == ["0001", "0002"]
    for entry in entries:
        chunk = io.BytesIO(raw[entry.start : entry.start + entry.length])
        assert {m.name: m.data for m in iter_tar(chunk)} == {n: d for n, d in files.items() if n.startswith(entry.key)}
    assert [(k, sorted(m)) for k, m in iter_samples(io.BytesIO(raw))] == [("0001", ["json", "src.png"]), ("0002", ["src.png", "v0.jpg"])]
    assert split_member("dir/0001.v0.jpg") == ("dir/0001", "v0.jpg")
