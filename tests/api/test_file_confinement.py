"""Issue 19, files: the roots hold for the file actually opened (list columns, symlinks, old job records)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import uuid

import pytest
from PIL import Image

from .conftest import wait_for
from .test_api_server import job_body

SECRET = b"TOPSECRET-outside-every-root"


def _jpeg(color=(10, 200, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A folder outside every root: a valid image with a secret tail, and a private text file."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "private.jpg").write_bytes(_jpeg((1, 2, 3)) + SECRET)  # decodes: would be copied as-is
    (folder / "private.txt").write_bytes(SECRET)
    return folder


def _tar_bytes(store) -> bytes:
    """Every member's bytes of every tar in a store (empty when none was written)."""
    data = b""
    for tar_path in sorted((store / "shards").glob("*.tar")) if (store / "shards").exists() else []:
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                data += tar.extractfile(member).read()
    return data


def test_a_list_files_uri_bytes_column_reads_nothing_outside_the_roots(alice, api_base, outside):
    """The HIGH repro: path,uri_bytes with uri_bytes outside; source_copy original would copy it byte for byte."""
    base = api_base["base"]
    data = base / "data-uri-bytes"
    data.mkdir()
    (data / "imgs").mkdir()
    (data / "imgs" / "a.jpg").write_bytes(_jpeg())
    (data / "list.csv").write_text(f"path,uri_bytes\nimgs/a.jpg,{outside / 'private.jpg'}\n")
    (data / "list2.csv").write_text(f"path,uri_bytes\nimgs/a.jpg,{outside / 'no-such.jpg'}\n")
    errors = []
    for name in ("list.csv", "list2.csv"):
        body = job_body(api_base, source=f"data-uri-bytes/{name}", out=f"stores/uri-bytes-{name}", k=1,
                        source_copy="original")
        response = alice.post("/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        job = wait_for(alice, response.json()["id"])
        assert job["state"] == "failed", job
        assert SECRET not in _tar_bytes(base / "stores" / f"uri-bytes-{name}")
        assert "outside your source roots" in job["error"], job["error"]
        errors.append(job["error"].replace("private.jpg", "X").replace("no-such.jpg", "X").replace(name, "L"))
    # Whether the outside file exists or not, the job says the same: no oracle.
    assert errors[0] == errors[1]


def test_a_list_files_uri_bytes_inside_the_roots_is_the_rows_path(tmp_path):
    """A store's sources.parquet (with uri_bytes) used as a list: the bytes are the path, confined like any."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genview.datastore.sources import list_sources

    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")
    with open(raw, "wb") as fh:
        fh.write(_jpeg())
    pq.write_table(pa.table({"uri": ["caf\\xe9.jpg"], "uri_bytes": pa.array([raw], pa.binary())}), tmp_path / "l.parquet")
    table = list_sources(str(tmp_path / "l.parquet"))
    assert table.column("uri_bytes").to_pylist() == [raw]
    assert table.column("uri").to_pylist() == [os.fsdecode(raw).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")]


def _run_worker(tmp_path, api_base, source, out, weights=None, **spec_fields):
    from genview.api.paths import canonical_root
    from genview.api.worker import run
    from genview.pipeline.spec import GenerateSpec

    base = str(api_base["base"])
    spec = GenerateSpec(source=str(source), out=str(out), model="icgan", weights=weights or api_base["weights"], k=1,
                        shard_size=4, view_size=16, device="cpu", **spec_fields)
    status = tmp_path / f"exit-{uuid.uuid4().hex[:6]}.json"
    roots = [canonical_root(base, base), canonical_root(api_base["weights"], base)]
    code = run(spec, roots[:1], base, str(status), [], weight_roots=roots)
    return code, json.loads(status.read_text())["error"]


def test_a_non_utf8_named_symlink_in_a_source_folder_is_checked_by_its_bytes(tmp_path, api_base, outside):
    base = api_base["base"]
    folder = base / f"nonutf8-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(_jpeg())
    os.symlink(os.fsencode(outside / "private.jpg"), os.path.join(os.fsencode(folder), b"b\xff.jpg"))
    out = base / "stores" / folder.name
    code, error = _run_worker(tmp_path, api_base, folder, out, source_copy="original")
    assert code != 0 and "outside your source roots" in error, error
    assert SECRET not in _tar_bytes(out)


def test_a_weights_folder_whose_files_link_out_is_not_loaded(tmp_path, api_base, outside):
    """The folder is inside a root; its files are symlinks to weights outside every root."""
    base = api_base["base"]
    elsewhere = outside / "weights-copy"
    if not elsewhere.exists():
        shutil.copytree(api_base["weights"], elsewhere)
    linked = base / f"linked-weights-{uuid.uuid4().hex[:6]}"
    linked.mkdir()
    for name in os.listdir(elsewhere):
        (linked / name).symlink_to(elsewhere / name)
    out = base / "stores" / linked.name
    code, error = _run_worker(tmp_path, api_base, base / "imgs", out, weights=str(linked))
    assert code != 0 and "outside your source or model roots" in error, error
    assert not (out / "genview.json").exists()  # no weights sha256 recorded: nothing was loaded


def test_a_job_queued_before_migration_0002_gets_weight_roots_from_the_settings(server, alice, api_base, outside):
    """weight_roots NULL (an old record): the worker still refuses an outside params.encoder_weights."""
    from genview.api.db import Job, make_engine, make_sessionmaker
    from genview.api.paths import canonical_root
    from genview.api.service import spec_digest
    from genview.pipeline.spec import GenerateSpec

    base = str(api_base["base"])
    spec = GenerateSpec(source=os.path.join(base, "imgs"), out=os.path.join(base, "stores", "old-record"),
                        model="icgan", weights=api_base["weights"], k=1, view_size=16, device="cpu",
                        params={"encoder_weights": str(outside / "private.txt")})
    public_id = f"old-{uuid.uuid4().hex[:8]}"
    engine = make_engine(f"sqlite:///{os.path.join(base, 'jobs.sqlite')}")
    try:
        with make_sessionmaker(engine)() as session:
            session.add(Job(id=public_id, public_id=public_id, owner="alice", state="queued",
                            spec=spec.model_dump(mode="json"), spec_digest=spec_digest(spec), out=spec.out,
                            read_roots=[canonical_root(base, base)], weight_roots=None, executor="local",
                            cancel_requested=False))
            session.commit()
    finally:
        engine.dispose()
    job = wait_for(alice, public_id)
    assert job["state"] == "failed", job
    assert "params.encoder_weights" in job["error"] and "outside your source or model roots" in job["error"], job["error"]
