"""genview.confinement: files are checked as they are opened (bytes, symlinks followed), never by name only."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from genview import confinement
from genview.pipeline.shard import load_and_decode

OUTSIDE_BYTES = b"TOPSECRET-outside-the-roots"


def _jpeg(color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture()
def layout(tmp_path):
    """root/ (allowed) holding a.jpg, and outside/ holding a private image and a private text file."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "a.jpg").write_bytes(_jpeg())
    (outside / "private.jpg").write_bytes(_jpeg((1, 2, 3)) + OUTSIDE_BYTES)
    (outside / "private.txt").write_bytes(OUTSIDE_BYTES)
    return root, outside


@pytest.fixture()
def policy(layout):
    root, _ = layout
    previous = confinement.active()
    confinement.install(confinement.Policy(read=(os.path.realpath(root),)))
    yield
    confinement.install(previous)


def test_a_symlink_out_of_the_root_is_refused_when_opened(layout, policy):
    root, outside = layout
    (root / "link.jpg").symlink_to(outside / "private.jpg")
    (root / "inner.jpg").symlink_to(root / "a.jpg")
    assert confinement.read_bytes(str(root / "inner.jpg")) == (root / "a.jpg").read_bytes()
    with pytest.raises(confinement.OutsideRoots):
        confinement.read_bytes(str(root / "link.jpg"))


def test_a_symlinked_folder_out_and_dotdot_through_it_are_refused(layout, policy):
    root, outside = layout
    (root / "sub").symlink_to(outside)
    for path in (root / "sub" / "private.jpg", f"{root}/sub/../outside/private.jpg"):
        with pytest.raises(confinement.OutsideRoots):
            confinement.read_bytes(str(path))
    # '..' applies to where the link led (the kernel's rule): back into the root is inside.
    assert confinement.read_bytes(f"{root}/sub/../root/a.jpg") == (root / "a.jpg").read_bytes()


def test_a_non_utf8_named_symlink_is_checked_by_its_bytes(layout, policy):
    root, outside = layout
    name = os.path.join(os.fsencode(root), b"caf\xe9.jpg")
    os.symlink(os.fsencode(outside / "private.jpg"), name)
    with pytest.raises(confinement.OutsideRoots) as info:
        confinement.read_bytes(name)
    assert "\\xe9" in str(info.value)  # shown readable, checked by its bytes
    with pytest.raises(confinement.OutsideRoots):
        confinement.check(name)


def test_the_outside_error_is_no_existence_or_type_oracle(layout, policy):
    """Same message for an outside image, an outside text file, an outside folder and nothing at all."""
    root, outside = layout
    messages = set()
    for target in ("private.jpg", "private.txt", "", "no-such-file.jpg", "no-such-dir/x.jpg"):
        path = str(outside / target) if target else str(outside)
        with pytest.raises(confinement.OutsideRoots) as info:
            confinement.read_bytes(path, shown="X")
        messages.add(str(info.value))
    assert len(messages) == 1, messages
    # Inside the roots the real error helps the user.
    with pytest.raises(FileNotFoundError):
        confinement.read_bytes(str(root / "missing.jpg"))


def test_a_source_swapped_for_a_symlink_after_the_listing_is_not_read(layout, policy):
    """Check-then-use: the listing saw a real file; when the reader opens it, it leads out."""
    root, outside = layout
    source = root / "b.jpg"
    source.write_bytes(_jpeg())
    confinement.check(str(source))  # what the worker's listing check saw: a file inside
    source.unlink()
    source.symlink_to(outside / "private.jpg")  # swapped before the shard reads it
    item = load_and_decode({"source_id": 0, "uri": str(source), "shard": 0}, {})
    assert not item.ok and item.data is None
    assert "outside your source roots" in item.error and "private" not in item.error
    # A failed row of a missing outside file reads exactly the same: no oracle either.
    (root / "c.jpg").symlink_to(outside / "nothing-here.jpg")
    other = load_and_decode({"source_id": 1, "uri": str(root / "c.jpg"), "shard": 0}, {})
    assert other.error.replace("c.jpg", "b.jpg") == item.error


def test_uri_bytes_are_opened_confined(layout, policy):
    """The column the reader opens for non-UTF-8 names is confined, whatever `uri` says."""
    root, outside = layout
    record = {"source_id": 0, "uri": str(root / "a.jpg"), "uri_bytes": os.fsencode(outside / "private.jpg"), "shard": 0}
    item = load_and_decode(record, {})
    assert not item.ok and "outside your source roots" in item.error


def test_without_a_policy_files_open_as_before(layout):
    root, outside = layout
    assert confinement.active() is None
    (root / "link.jpg").symlink_to(outside / "private.jpg")
    assert OUTSIDE_BYTES in confinement.read_bytes(str(root / "link.jpg"))


def test_confined_path_gives_loaders_the_checked_files(layout, tmp_path):
    """Weights folders are handed to loaders as links to descriptors opened (and checked) beforehand."""
    root, outside = layout
    weights = root / "weights"
    (weights / "sub").mkdir(parents=True)
    (weights / "config.json").write_text("{}")
    (weights / "sub" / "model.bin").write_bytes(b"weights")
    previous = confinement.active()
    confinement.install(confinement.Policy(read=(str(root),), weights=(os.path.realpath(root),)))
    try:
        with confinement.confined_path(str(weights)) as staged:
            (weights / "sub" / "model.bin").unlink()
            (weights / "sub" / "model.bin").symlink_to(outside / "private.txt")  # swapped while loading
            assert open(os.path.join(staged, "sub", "model.bin"), "rb").read() == b"weights"
            assert sorted(os.listdir(staged)) == ["config.json", "sub"]
        (weights / "config.json").unlink()
        (weights / "config.json").symlink_to(outside / "private.txt")
        with pytest.raises(confinement.OutsideRoots):
            with confinement.confined_path(str(weights)):
                pass
    finally:
        confinement.install(previous)


def test_store_writes_and_removals_stay_in_the_output_roots(layout):
    """A store folder swapped for a symlink out: writes and removals through it are refused, inside ones work."""
    from genview.datastore.fs import open_url, write_atomic
    from genview.datastore.store import Store

    root, outside = layout
    store_dir = root / "store"
    (store_dir / "stats").mkdir(parents=True)
    (outside / "000001.json").write_text("someone else's marker")
    previous = confinement.active()
    confinement.install(confinement.Policy(read=(str(root),), output=(os.path.realpath(store_dir),)))
    try:
        fs, _ = open_url(str(store_dir))
        write_atomic(fs, str(store_dir / "stats" / "000000.json"), b"{}")
        assert (store_dir / "stats" / "000000.json").read_bytes() == b"{}"
        (store_dir / "stats").rename(store_dir / "stats-old")
        (store_dir / "stats").symlink_to(outside)  # swapped while the job runs
        with pytest.raises(confinement.OutsideRoots):
            write_atomic(fs, str(store_dir / "stats" / "000002.json"), b"{}")
        with pytest.raises(confinement.OutsideRoots):
            Store(str(store_dir)).reset_shard(1)
        assert sorted(os.listdir(outside)) == ["000001.json", "private.jpg", "private.txt"]
    finally:
        confinement.install(previous)
