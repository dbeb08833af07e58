"""Store integrity: damage is seen by verify, repaired by a rerun or `verify --repair`, never counted as done."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from genview.cli.main import main as cli
from genview.datastore.store import Store, StoreError
from genview.datastore.verify import verify_store
from genview.pipeline import GenerateSpec, generate
from genview.synthetic_data import make_image_folder

K = 2


def spec_for(source, out, weights, **overrides) -> GenerateSpec:
    """4 sources per shard, K views each: 12 sources -> 3 shards."""
    fields = dict(source=str(source), out=str(out), model="icgan", weights=weights, k=K, shard_size=4, batch_size=4)
    fields.update(overrides)
    return GenerateSpec(**fields)


@pytest.fixture()
def made(tmp_path, image_folder, tiny_weights):
    """A finished store and its spec."""
    spec = spec_for(image_folder, tmp_path / "st", tiny_weights())
    generate(spec, progress=False)
    return spec, tmp_path / "st"


def _flip_byte_in_a_view(tar_path) -> None:
    """Flip one byte in the middle of a view's data (the JPEG may well still decode)."""
    with tarfile.open(tar_path) as tar:
        member = next(m for m in tar.getmembers() if ".v0." in m.name)
    offset = member.offset_data + member.size // 2
    with open(tar_path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_a_flipped_byte_in_a_view_fails_verify(made):
    _, out = made
    _flip_byte_in_a_view(out / "shards" / "000001.tar")
    report = verify_store(str(out), decode=True)
    assert not report.ok and report.damaged == [1]
    assert any("sha256" in p for p in report.problems), report.problems


def test_rerun_redoes_a_truncated_done_shard(made, capsys):
    spec, out = made
    reference = (out / "shards" / "000002.tar").read_bytes()
    with open(out / "shards" / "000002.tar", "r+b") as fh:
        fh.truncate(len(reference) - 3000)
    summary = generate(spec, progress=False)
    assert summary.shards_run == 1 and summary.views == 12 * K
    assert "redoing a damaged shard: shard 000002: tar is" in capsys.readouterr().err
    assert (out / "shards" / "000002.tar").read_bytes() == reference
    assert verify_store(str(out)).ok


def test_check_hashes_redoes_a_flipped_byte_and_a_plain_rerun_does_not_read_tars(made):
    spec, out = made
    _flip_byte_in_a_view(out / "shards" / "000000.tar")
    assert generate(spec, progress=False).shards_run == 0  # same size, same members: the cheap check passes
    summary = generate(spec, progress=False, check_hashes=True)
    assert summary.shards_run == 1
    assert verify_store(str(out)).ok


def test_verify_repair_redoes_damaged_shards(made, capsys):
    _, out = made
    _flip_byte_in_a_view(out / "shards" / "000001.tar")
    (out / "stats" / ".000002.json.0123456789ab.tmp").write_text("{")  # a kill while a marker was written
    assert cli(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "stats/.000002.json.0123456789ab.tmp" in text and "--repair" in text
    assert cli(["verify", str(out), "--repair"]) == 0
    text = capsys.readouterr().out
    assert "1 damaged shard(s) redone: 1" in text and text.rstrip().endswith("OK")
    assert not list((out / "stats").glob(".*"))


def test_kill_while_the_marker_is_written_is_cleaned_by_a_rerun(made):
    spec, out = made
    marker = out / "stats" / "000001.json"
    marker.rename(out / "stats" / ".000001.json.abcdefabcdef.tmp")  # the marker never got its final name
    assert not verify_store(str(out)).ok
    assert generate(spec, progress=False).shards_run == 1
    assert verify_store(str(out)).ok and not list((out / "stats").glob(".*"))


def test_lost_listing_and_changed_folder_is_refused(tmp_path, tiny_weights):
    source = tmp_path / "src"
    make_image_folder(source, classes=2, per_class=4, size=48, seed=4)
    spec = spec_for(source, tmp_path / "st", tiny_weights())
    generate(spec, progress=False)
    (tmp_path / "st" / "sources.parquet").unlink()
    assert generate(spec, progress=False).shards_run == 0  # same folder: listed again, the same plan
    (tmp_path / "st" / "sources.parquet").unlink()
    shutil.copy(source / "class_00" / "img_0000.jpg", source / "class_00" / "new.jpg")
    with pytest.raises(StoreError, match=r"lost its sources.parquet and the source now lists differently \(9 images now, 8"):
        generate(spec, progress=False)


def test_non_utf8_names_are_data_not_a_crash(tmp_path, tiny_weights):
    source = tmp_path / "src"
    make_image_folder(source, classes=1, per_class=3, size=48, seed=5)
    good = (source / "class_00" / "img_0000.jpg").read_bytes()
    raw_dir = os.fsencode(source / "class_00")
    with open(raw_dir + b"/caf\xe9.jpg", "wb") as fh:  # latin-1 name: not UTF-8
        fh.write(good)
    with open(raw_dir + b"/bad\xff.jpg", "wb") as fh:
        fh.write(b"not an image")
    summary = generate(spec_for(source, tmp_path / "st", tiny_weights()), progress=False)
    assert (summary.ok, summary.failed) == (4, 1)
    rows = Store(str(tmp_path / "st")).manifest().to_pylist()
    names = {r["source_uri"].rsplit("/", 1)[1]: r["status"] for r in rows}
    assert names["caf\\xe9.jpg"] == "ok" and names["bad\\xff.jpg"] == "failed"
    # A .txt list with a non-UTF-8 line: the same.
    (tmp_path / "list.txt").write_bytes(b"src/class_00/img_0001.jpg\nsrc/class_00/caf\xe9.jpg\n")
    listed = generate(spec_for(tmp_path / "list.txt", tmp_path / "st2", tiny_weights()), progress=False)
    assert (listed.ok, listed.failed) == (2, 0)


def test_source_spelled_differently_resumes(tmp_path, image_folder, tiny_weights, monkeypatch):
    monkeypatch.chdir(image_folder.parent)
    name = image_folder.name
    first = generate(spec_for(name + "/", tmp_path / "st", tiny_weights()), progress=False)
    for spelling in (name, str(image_folder), f"./{name}//"):
        again = generate(spec_for(spelling, tmp_path / "st", tiny_weights()), progress=False)
        assert again.shards_run == 0 and again.views == first.views
        assert "all were already done, nothing to run" in str(again)
    assert Store(str(tmp_path / "st")).spec["source"] == str(image_folder)


def test_skipped_files_are_counted(tmp_path, tiny_weights):
    source = tmp_path / "src"
    make_image_folder(source, classes=1, per_class=2, size=48, seed=6)
    (source / "class_00" / "README.txt").write_text("not an image")
    (source / "class_00" / ".DS_Store").write_bytes(b"\0")
    summary = generate(spec_for(source, tmp_path / "st", tiny_weights()), progress=False)
    assert summary.skipped_files == 2 and "2 file(s) in the source were skipped as not images" in str(summary)
    header = json.loads((tmp_path / "st" / "genview.json").read_text())
    assert sorted(header["skipped_files"]["first"]) == ["class_00/.DS_Store", "class_00/README.txt"]


def test_inspect_into_a_closed_pipe_has_no_traceback(made):
    _, out = made
    done = subprocess.run(f"{sys.executable} -m genview.cli.main inspect {out} --json | head -c 10",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert done.stdout == "{\n  \"confi"[:10] or len(done.stdout) == 10
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def _mount_read_only(path) -> bool:
    """Bind-mount `path` read-only onto itself (root ignores file modes, so a mode change proves nothing)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode != 0:
        return False
    if subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", str(path)], capture_output=True)
        return False
    return True


def test_read_only_store_gives_one_line_and_leaves_nothing(made, tiny_weights):
    spec, out = made
    (out / "stats" / "000001.json").unlink()  # one shard to redo
    before = sorted(p.name for p in out.rglob("*"))
    if not _mount_read_only(out):
        pytest.skip("a read-only bind mount is not possible here (needs root and mount)")
    try:
        cmd = [sys.executable, "-m", "genview.cli.main", "generate", spec.source, "--model", "icgan",
               "--weights", spec.weights, "--k", str(K), "--shard-size", "4", "--batch-size", "4", "--out", str(out),
               "--no-progress"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        subprocess.run(["umount", str(out)], capture_output=True)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = [line for line in done.stderr.splitlines() if line.startswith("genview generate: error:")]
    assert len(last) == 1 and "read-only" in last[0].lower(), done.stderr
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing written, no temp file left
