"""Issue 19, repair and resume that never destroy: each reproduction from the issue, as a test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from genview.cli.main import main as cli
from genview.datastore.store import Store, StoreError
from genview.datastore.verify import verify_store
from genview.pipeline import GenerateSpec, generate

K = 2


def spec_for(source, out, weights, **overrides) -> GenerateSpec:
    """4 sources per shard: 12 sources -> 3 shards."""
    fields = dict(source=str(source), out=str(out), model="icgan", weights=weights, k=K, shard_size=4, batch_size=4)
    fields.update(overrides)
    return GenerateSpec(**fields)


@pytest.fixture()
def made(tmp_path, image_folder, tiny_weights):
    spec = spec_for(image_folder, tmp_path / "st", tiny_weights())
    generate(spec, progress=False)
    return spec, tmp_path / "st"


def _shard_files(out, shard=1):
    name = f"{shard:06d}"
    return [out / "shards" / f"{name}.tar", out / "manifest" / f"{name}.parquet", out / "stats" / f"{name}.json"]


def test_repair_with_weights_it_cannot_load_deletes_nothing(made, tmp_path):
    _, out = made
    files = _shard_files(out)
    with open(files[0], "r+b") as fh:  # damage shard 1: its tar loses its last block
        fh.truncate(os.path.getsize(files[0]) - 512)
    before = {path: path.read_bytes() for path in files}
    code = cli(["verify", str(out), "--repair", "--weights", str(tmp_path / "no-such-weights")])
    assert code == 2
    assert {path: path.read_bytes() for path in files} == before  # tar, fragment and marker all still there


def test_repair_with_other_weights_deletes_nothing(made, tmp_path, capsys):
    """Weights that load but would make other views (another sha256): refused before any deletion."""
    from genview.cli.models import init_random_model

    _, out = made
    other = tmp_path / "other-weights"
    init_random_model("icgan", "tiny", str(other), seed=7)
    files = _shard_files(out)
    files[1].unlink()  # shard 1 damaged: fragment gone
    before = {path: path.read_bytes() for path in files if path.exists()}
    assert cli(["verify", str(out), "--repair", "--weights", str(other)]) == 2
    assert "nothing was deleted" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in files if path.exists()} == before


def test_genview_json_records_canonical_weights_and_repair_works_from_another_folder(tmp_path, image_folder,
                                                                                      tiny_weights, monkeypatch):
    """The issue's run: weights typed relative ("W"), repair from another folder."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(tiny_weights(), work / "W")
    monkeypatch.chdir(work)
    generate(spec_for(image_folder, "st", "W"), progress=False)
    header = json.loads((work / "st" / "genview.json").read_text())
    assert header["spec"]["weights"]["id"] == str(work / "W")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (work / "st" / "manifest" / "000001.parquet").unlink()
    assert cli(["verify", str(work / "st"), "--repair"]) == 0
    assert verify_store(str(work / "st")).ok


def test_a_lost_genview_json_is_not_adopted_by_another_spec(made, capsys):
    spec, out = made
    (out / "genview.json").unlink()
    other = spec.model_copy(update={"params": {"truncation": 0.3}})
    with pytest.raises(StoreError, match="made with a different spec"):
        generate(other, progress=False)
    assert not (out / "genview.json").exists()
    # The spec that made them adopts them again without redoing any.
    summary = generate(spec, progress=False)
    assert summary.shards_run == 0 and verify_store(str(out)).ok


def test_a_lost_genview_json_with_markers_from_before_spec_digests_is_refused(made):
    spec, out = made
    (out / "genview.json").unlink()
    marker = out / "stats" / "000000.json"
    stats = json.loads(marker.read_text())
    for field in ("spec_digest", "marker_sha256", "manifest_sha256"):
        stats.pop(field)
    marker.write_text(json.dumps(stats))
    with pytest.raises(StoreError, match="do not record the spec that made them.*restore genview.json"):
        generate(spec, progress=False)


def test_an_edited_manifest_value_is_found_by_verify_and_by_a_rerun(made):
    spec, out = made
    path = out / "manifest" / "000002.parquet"
    table = pq.read_table(path)
    index = table.schema.get_field_index("similarity")
    halved = pc.multiply(table.column(index), pa.scalar(0.5, table.schema.field(index).type))
    pq.write_table(table.set_column(index, table.schema.field(index), halved), path)
    report = verify_store(str(out))
    assert report.damaged == [2] and any("manifest fragment was changed" in p for p in report.problems), report.problems
    assert generate(spec, progress=False).shards_run == 1
    assert verify_store(str(out)).ok


def test_an_edited_marker_sha_is_found_by_a_plain_rerun(made):
    spec, out = made
    marker = out / "stats" / "000000.json"
    stats = json.loads(marker.read_text())
    stats["tar_sha256"] = "0" * 64
    marker.write_text(json.dumps(stats, indent=2, sort_keys=True))
    assert generate(spec, progress=False).shards_run == 1  # no tar byte read: the marker's own digest
    assert verify_store(str(out)).ok


def test_root_level_temp_files_are_reported_and_repair_removes_them_without_a_model(made, capsys):
    _, out = made
    temps = [out / ".genview.json.0123456789ab.tmp", out / ".sources.parquet.0123456789ab.tmp",
             out / "._progress.json.0123456789ab.tmp"]
    for temp in temps:
        temp.write_bytes(b"partial")
    assert cli(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert all(temp.name in text for temp in temps)
    assert f"genview verify {out} --repair" in text  # the advice is a command that clears them
    assert cli(["verify", str(out), "--repair", "--weights", "/no/such/weights"]) == 0  # nothing to regenerate
    assert not any(temp.exists() for temp in temps)
    assert verify_store(str(out)).ok


def test_source_paths_with_dotdot_are_normalised(tmp_path, image_folder, tiny_weights):
    """Stored normalised, so the other spelling resumes after sources.parquet is lost."""
    twisted = f"{image_folder}/../{os.path.basename(image_folder)}"
    out = tmp_path / "st"
    generate(spec_for(twisted, out, tiny_weights()), progress=False)
    uris = Store(str(out)).read_sources().column("uri").to_pylist()
    assert all("/../" not in uri and uri.startswith(str(image_folder) + "/") for uri in uris)
    (out / "sources.parquet").unlink()
    summary = generate(spec_for(image_folder, out, tiny_weights()), progress=False)
    assert summary.shards_run == 0 and verify_store(str(out)).ok


def test_list_file_entries_with_dotdot_are_normalised(tmp_path, image_folder):
    from genview.datastore.sources import list_sources

    first = sorted(p for p in image_folder.rglob("*") if p.is_file())[0]
    (tmp_path / "l.txt").write_text(f"{first.parent}/../{first.parent.name}/{first.name}\n")
    assert list_sources(str(tmp_path / "l.txt")).column("uri").to_pylist() == [str(first)]


# -- a full disk ---------------------------------------------------------------------------------

@pytest.fixture()
def small_disk(tmp_path):
    """A 2 MiB tmpfs (root only); skipped where mounting is not permitted."""
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_leaves_no_temp_file_and_names_the_file(small_disk, tmp_path, tiny_weights):
    from genview.synthetic_data import make_image_folder

    images = tmp_path / "big-images"
    make_image_folder(images, classes=2, per_class=6, size=256, seed=3)
    out = small_disk / "st"
    argv = ["generate", str(images), "--out", str(out), "--model", "icgan", "--weights", tiny_weights(),
            "--k", "4", "--shard-size", "4", "--format", "png", "--view-size", "256", "--source-copy", "png",
            "--no-progress"]
    done = subprocess.run([sys.executable, "-m", "genview.cli.main", *argv], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "No space left on device" in last and last.rstrip().endswith((".tar", ".parquet", ".json")), last
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
