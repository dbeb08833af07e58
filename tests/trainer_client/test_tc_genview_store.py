"""The trainer client, pull and the shard check on a store genview itself wrote (format v2)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from genview.trainer_client import GenViewDataset, SinglePolicy, pull_store
from genview.trainer_client.store_index import StoreIndex


@pytest.mark.parametrize("source_copy", ["jpg", "none"])
def test_client_reads_a_v2_store_genview_wrote(tmp_path, image_folder, tiny_weights, source_copy):
    from genview.cli.main import main

    out = tmp_path / "store"
    assert main(["generate", str(image_folder), "--model", "icgan", "--k", "2", "--weights", tiny_weights(),
                 "--out", str(out), "--shard-size", "5", "--view-size", "16", "--source-copy", source_copy,
                 "--no-progress"]) == 0
    header = json.loads((out / "genview.json").read_text())
    assert header["format_version"] == 2 and sorted(p.name for p in (out / "stats").iterdir()) == sorted(
        f"00000{i}.{part}" for i in range(3) for part in ("json", "summary.parquet", "index.parquet"))
    index = StoreIndex(str(out))
    assert index.num_samples == 12 and index.has_source == (source_copy != "none")
    ds = GenViewDataset(str(out), SinglePolicy(p=1.0, crop_size=8), rank=0, world_size=2, seed=0)
    loader = ds.loader(4, num_workers=2)
    ids = [int(i) for batch in loader for i in batch["source_id"]]
    assert len(loader) == 2 and len(ids) == 6
    exact = [s["source_id"] for r in range(2) for s in GenViewDataset(str(out), SinglePolicy(p=1.0, crop_size=8),
                                                                       rank=r, world_size=2, even_ranks="none")]
    assert Counter(exact) == Counter(range(12))
    report = pull_store(str(out), str(tmp_path / "copy"))  # the shard check with sha256, per shard
    assert report.shards_copied == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "copy" / "stats").iterdir()) == sorted(
        f"00000{i}.{part}" for i in range(3) for part in ("json", "summary.parquet", "index.parquet"))
    assert main(["verify", str(tmp_path / "copy")]) == 0


def test_source_copy_original_over_mixed_formats_warns_records_and_inspects(tmp_path, image_folder, tiny_weights, capsys):
    import shutil

    from PIL import Image

    from genview.cli.main import main

    mixed = tmp_path / "mixed"
    shutil.copytree(image_folder, mixed)
    for path in sorted(mixed.rglob("*.jpg"))[::3]:  # 4 of 12 become PNG files
        Image.open(path).save(path.with_suffix(".png"))
        path.unlink()
    out = tmp_path / "store"
    assert main(["generate", str(mixed), "--model", "icgan", "--k", "1", "--weights", tiny_weights(), "--out", str(out),
                 "--shard-size", "6", "--view-size", "16", "--source-copy", "original", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "--source-copy original over sources in 2 formats (8 jpg, 4 png)" in err and "will not open" in err
    header = json.loads((out / "genview.json").read_text())
    assert header["source_formats"] == {"jpg": 8, "png": 4}
    assert main(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "WARNING: --source-copy original over sources in 2 formats" in shown

    single = tmp_path / "single"
    assert main(["generate", str(image_folder), "--model", "icgan", "--k", "1", "--weights", tiny_weights(),
                 "--out", str(single), "--shard-size", "6", "--view-size", "16", "--source-copy", "original",
                 "--no-progress"]) == 0
    assert "will not open" not in capsys.readouterr().err
    assert json.loads((single / "genview.json").read_text())["source_formats"] == {"jpg": 12}
