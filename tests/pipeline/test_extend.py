"""A store that grows: a changed source folder is refused with the counts, `--extend` adds new shards only."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from genview.cli.main import main as cli
from genview.datastore.inspect import inspect_store
from genview.datastore.store import Store
from genview.datastore.verify import verify_store
from genview.synthetic_data import make_image_folder
from genview.trainer_client.store_index import StoreIndex

K = 2


def generate(source: Path, out: Path, weights: str, *extra: str) -> int:
    return cli(["generate", str(source), "--model", "icgan", "--weights", weights, "--out", str(out), "--k", str(K),
                "--shard-size", "3", "--batch-size", "4", "--device", "cpu", "--no-progress", *extra])


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file of the store's shard folders (tars, manifest fragments, done markers)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("shards", "manifest", "stats") for p in sorted((folder / sub).glob("*"))}


def test_grown_folder_is_refused_then_extended(tmp_path, tiny_weights, capsys):
    source, out = tmp_path / "src", tmp_path / "store"
    make_image_folder(source, classes=3, per_class=4, size=64, seed=1)  # 12 sources -> 4 shards of 3
    assert generate(source, out, tiny_weights()) == 0
    before = digests(out)
    assert len([name for name in before if name.startswith("shards/")]) == 4

    # 4 images added: 3 in existing classes, 1 in a new class.
    extra = tmp_path / "extra"
    make_image_folder(extra, classes=4, per_class=5, size=64, seed=9)
    for cls in ("class_00", "class_01", "class_02"):
        shutil.copy(extra / cls / "img_0004.jpg", source / cls / "img_0004.jpg")
    (source / "class_03").mkdir()
    shutil.copy(extra / "class_03" / "img_0000.jpg", source / "class_03" / "img_0000.jpg")

    capsys.readouterr()
    assert generate(source, out, tiny_weights()) == 2  # a plain rerun is refused, nothing is written
    err = capsys.readouterr().err
    assert "4 image(s) added, 0 removed; 1 new class(es)" in err and "--extend" in err, err
    assert digests(out) == before

    assert generate(source, out, tiny_weights(), "--extend") == 0
    after = digests(out)
    assert {name: after[name] for name in before} == before  # done shards never rewritten
    assert sorted(set(after) - set(before)) == [
        "manifest/000004.parquet", "manifest/000005.parquet", "shards/000004.tar", "shards/000005.tar",
        "stats/000004.index.parquet", "stats/000004.json", "stats/000004.summary.parquet",
        "stats/000005.index.parquet", "stats/000005.json", "stats/000005.summary.parquet",
    ]
    header = json.loads((out / "genview.json").read_text())
    assert (header["num_shards"], header["num_sources"], header["shard_pattern"]) == (6, 16, "shards/{000000..000005}.tar")
    assert header["listing"]["count"] == 16
    assert header["extensions"] == [{"added": 4, "removed": 0, "first_shard": 4, "shards": 2}]

    report = verify_store(str(out), decode=True)
    assert report.ok, str(report)
    assert (report.shards_planned, report.shards_done, report.ok_sources, report.views) == (6, 6, 16, 16 * K)
    sources = Store(str(out)).read_sources().to_pylist()
    new = [row for row in sources if row["shard"] >= 4]
    assert sorted(row["source_id"] for row in new) == [12, 13, 14, 15]  # new ids after the highest
    assert {row["label"]: row["label_index"] for row in new}["class_03"] == 3  # a new class gets the next index
    old_labels = {row["label"]: row["label_index"] for row in sources if row["shard"] < 4}
    assert old_labels == {"class_00": 0, "class_01": 1, "class_02": 2}
    manifest = Store(str(out)).manifest()
    assert sorted(set(manifest.column("shard").to_pylist())) == [0, 1, 2, 3, 4, 5]
    assert len(StoreIndex(str(out)).shards) == 6  # the trainer client sees the new shards
    assert inspect_store(str(out))["shards"] == {"planned": 6, "done": 6}
    assert cli(["verify", str(out)]) == 0

    capsys.readouterr()
    assert generate(source, out, tiny_weights()) == 0  # the same command again: nothing changed, nothing to run
    assert "all were already done" in capsys.readouterr().out

    # An image removed: refused with the count; with --extend it stays in the store and is reported.
    (source / "class_00" / "img_0000.jpg").unlink()
    assert generate(source, out, tiny_weights()) == 2
    assert "0 image(s) added, 1 removed" in capsys.readouterr().err
    assert generate(source, out, tiny_weights(), "--extend") == 0
    assert "the 1 removed image(s) stay in the store" in capsys.readouterr().err
    assert digests(out) == after
    assert verify_store(str(out)).ok


def test_a_list_file_that_grew_is_refused_then_extended(tmp_path, image_folder, tiny_weights, capsys):
    lines = sorted(str(p) for p in Path(image_folder).rglob("*.jpg"))
    listing, out = tmp_path / "list.txt", tmp_path / "store"
    listing.write_text("\n".join(lines[:9]) + "\n")
    assert generate(listing, out, tiny_weights()) == 0
    assert json.loads((out / "genview.json").read_text())["source_file"]["size"] == listing.stat().st_size
    listing.write_text("\n".join(lines) + "\n")  # 3 more lines: the fingerprint differs, the listing is compared
    capsys.readouterr()
    assert generate(listing, out, tiny_weights()) == 2
    assert "3 image(s) added, 0 removed" in capsys.readouterr().err
    assert generate(listing, out, tiny_weights(), "--extend") == 0
    assert verify_store(str(out)).shards_done == 4
