"""Resume on a folder source: an unchanged tree is not listed again (directory mtimes), any change still is."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from genview.datastore import source_fingerprint
from genview.datastore.store import StoreError
from genview.pipeline import runner
from genview.pipeline.runner import RELIST_SOURCE_ENV, generate
from genview.pipeline.spec import GenerateSpec
from genview.synthetic_data import make_image_folder


def make_spec(source: Path, out: Path, weights: str, **extra) -> GenerateSpec:
    return GenerateSpec(source=str(source), out=str(out), model="icgan", weights=weights, k=1, shard_size=3,
                        batch_size=4, device="cpu", **extra)


def directories(root: Path) -> list[Path]:
    return [root, *(p for p in root.rglob("*") if p.is_dir())]


def set_mtimes(root: Path, when_ns: int) -> None:
    """Every directory of the tree gets this mtime (a tree at rest since then, or one just written)."""
    for folder in directories(root):
        os.utime(folder, ns=(when_ns, when_ns))


def at_rest(root: Path) -> Path:
    set_mtimes(root, time.time_ns() - 60 * 10**9)  # last changed a minute ago: no mtime is racy
    return root


def header(out: Path) -> dict:
    return json.loads((out / "genview.json").read_text())


class Listings:
    """Counts the listings of the source the runner makes (its own scan_sources, wrapped)."""

    def __init__(self, monkeypatch, allowed: bool = True):
        self.count = 0
        self.allowed = allowed
        real = runner.scan_sources

        def counted(source):
            self.count += 1
            if not self.allowed:
                raise AssertionError(f"the source {source} was listed again")
            return real(source)

        monkeypatch.setattr(runner, "scan_sources", counted)


@pytest.fixture()
def folder_store(tmp_path, tiny_weights):
    """A store of a folder at rest (2 classes x 3 images, 2 shards): (source, out, spec)."""
    source, out = tmp_path / "src", tmp_path / "store"
    make_image_folder(source, classes=2, per_class=3, size=32, seed=3)
    at_rest(source)
    spec = make_spec(source, out, tiny_weights())
    assert generate(spec, progress=False).shards == 2
    return source, out, spec


def test_an_unchanged_folder_is_not_listed_again(folder_store, monkeypatch):
    source, out, spec = folder_store
    recorded = header(out)["source_folder"]
    assert set(recorded["directories"]) == {".", "class_00", "class_01"}
    assert recorded["directories"]["class_00"] == (source / "class_00").stat().st_mtime_ns
    assert header(out)["source_file"] is None

    listings = Listings(monkeypatch, allowed=False)
    summary = generate(spec, progress=False)
    assert (summary.shards, summary.shards_run, listings.count) == (2, 0, 0)
    assert header(out)["source_folder"] == recorded  # nothing was listed, so nothing was refreshed


def _add_image(source: Path) -> None:
    shutil.copy(source / "class_00" / "img_0000.jpg", source / "class_01" / "img_0100.jpg")


def _add_class(source: Path) -> None:
    (source / "class_02").mkdir()
    shutil.copy(source / "class_00" / "img_0000.jpg", source / "class_02" / "img_0000.jpg")


def _remove_image(source: Path) -> None:
    (source / "class_01" / "img_0002.jpg").unlink()


def _rename_image(source: Path) -> None:
    (source / "class_00" / "img_0001.jpg").rename(source / "class_00" / "img_0009.jpg")


@pytest.mark.parametrize("change, counts, new_shards", [
    (_add_image, "1 image(s) added, 0 removed (7 images now", 1),
    (_add_class, "1 image(s) added, 0 removed; 1 new class(es) (7 images now", 1),
    (_remove_image, "0 image(s) added, 1 removed (5 images now", 0),
    (_rename_image, "1 image(s) added, 1 removed (6 images now", 1),
])
def test_a_changed_folder_is_listed_and_refused(folder_store, monkeypatch, change, counts, new_shards):
    source, out, spec = folder_store
    change(source)
    listings = Listings(monkeypatch)
    with pytest.raises(StoreError, match="--extend") as refused:
        generate(spec, progress=False)
    assert counts in str(refused.value)
    assert listings.count == 1

    summary = generate(spec.model_copy(update={"extend": True}), progress=False)
    assert summary.shards_run == new_shards
    refreshed = header(out)["source_folder"]  # the extension records the tree as it is now
    assert refreshed["directories"] == source_fingerprint.directory_mtimes(str(source))


def test_a_racy_fingerprint_forces_a_listing_and_is_refreshed(tmp_path, tiny_weights, monkeypatch):
    source, out = tmp_path / "src", tmp_path / "store"
    make_image_folder(source, classes=2, per_class=3, size=32, seed=3)
    spec = make_spec(source, out, tiny_weights())
    generator = runner.load_generator(spec)  # loaded first: the plan follows the mtimes below at once
    written = time.time_ns()
    set_mtimes(source, written)  # the tree was written just now
    generate(spec, generator=generator, progress=False)
    first = header(out)["source_folder"]
    # Racy: a change within the file system's timestamp granularity after the fingerprint could keep these mtimes.
    assert first["taken_ns"] - source_fingerprint.RACY_NS <= written <= first["taken_ns"]

    time.sleep(max(0.0, (written + source_fingerprint.RACY_NS) / 1e9 + 0.1 - time.time()))
    listings = Listings(monkeypatch)
    assert generate(spec, generator=generator, progress=False).shards_run == 0
    assert listings.count == 1  # not trusted: listed again (same images) ...
    second = header(out)["source_folder"]
    assert second["directories"] == first["directories"] and second["taken_ns"] > written + source_fingerprint.RACY_NS

    listings.allowed = False  # ... and the refreshed fingerprint is trusted from then on
    assert generate(spec, generator=generator, progress=False).shards_run == 0
    assert listings.count == 1


def test_a_store_made_before_folder_fingerprints_resumes_and_gains_one(folder_store, monkeypatch):
    source, out, spec = folder_store
    old = header(out)
    del old["source_folder"]  # what genview.json held for a folder source before: "source_file": null only
    (out / "genview.json").write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")

    listings = Listings(monkeypatch)
    assert generate(spec, progress=False).shards_run == 0
    assert listings.count == 1
    assert header(out)["source_folder"]["directories"] == source_fingerprint.directory_mtimes(str(source))
    listings.allowed = False
    assert generate(spec, progress=False).shards_run == 0


def test_relisting_forced_for_unreliable_mtimes(folder_store, monkeypatch):
    """A file system that does not update directory mtimes hides a change; GENVIEW_RELIST_SOURCE=1 lists anyway."""
    source, out, spec = folder_store
    folder = source / "class_01"
    recorded = header(out)["source_folder"]["directories"]["class_01"]
    (folder / "img_0002.jpg").unlink()
    os.utime(folder, ns=(recorded, recorded))  # the mtime as it was: what such a file system shows
    assert generate(spec, progress=False).shards_run == 0  # trusted: the removal is not seen

    monkeypatch.setenv(RELIST_SOURCE_ENV, "1")
    with pytest.raises(StoreError, match=r"0 image\(s\) added, 1 removed"):
        generate(spec, progress=False)


def test_a_tree_with_a_symlinked_folder_gets_no_fingerprint(tmp_path, tiny_weights, monkeypatch):
    source, out = tmp_path / "src", tmp_path / "store"
    make_image_folder(source, classes=2, per_class=3, size=32, seed=3)
    (tmp_path / "elsewhere").mkdir()
    (source / "class_01" / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    at_rest(source)
    assert source_fingerprint.directory_mtimes(str(source)) is None
    spec = make_spec(source, out, tiny_weights())
    generate(spec, progress=False)
    assert header(out)["source_folder"] is None
    listings = Listings(monkeypatch)
    assert generate(spec, progress=False).shards_run == 0
    assert listings.count == 1  # always listed
