"""Issue 19: `genview browse` on a damaged store (a garbage genview.json, zero-byte shard tars), its
security headers and its Host allow-list (it has no login: a DNS-rebinding page must not read it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest

from live_process import assert_security_headers
from web_helpers import Process


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, web_sources, tiny_weights):
    """A finished 3-shard store (13 sources, k=2), kept pristine: tests damage copies of it."""
    from genview.pipeline.runner import generate
    from genview.pipeline.spec import GenerateSpec

    out = tmp_path_factory.mktemp("browse-damage") / "store"
    generate(GenerateSpec(source=str(web_sources), out=str(out), model="icgan", weights=tiny_weights("icgan"), k=2,
                          shard_size=5, batch_size=8, device="cpu", view_size=16), progress=False)
    return out


def _copy(store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    return copy


def _browse(store, port: int = 1) -> subprocess.CompletedProcess:
    """Run `genview browse` until it fails (a bad store never gets to bind the port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENVIEW_")}
    return subprocess.run([sys.executable, "-m", "genview.cli.main", "browse", str(store), "--port", str(port)],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("garbage", [b"\x00\x01garbage{{", b"", b'["a list"]', b'{"format": "something else"}',
                                     b"\xff\xfe not utf-8"])
def test_browse_on_a_damaged_header_is_one_line_and_exit_2(small_store, tmp_path, garbage):
    store = _copy(small_store, tmp_path)
    (store / "genview.json").write_bytes(garbage)
    result = _browse(store)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("genview browse: error: ") and "genview.json" in lines[0], lines[0]


def test_zero_byte_shards_are_flagged_in_the_page_the_images_and_the_start_line(small_store, tmp_path):
    store = _copy(small_store, tmp_path)
    (store / "shards" / "000001.tar").write_bytes(b"")
    server = Process(["browse", str(store), "--port", "{port}"], cwd=tmp_path, log=tmp_path / "browse.log").start("/")
    try:
        page = httpx.get(server.url + "/", timeout=60)
        assert page.status_code == 200
        assert 'id="empty-shards"' in page.text and "shard 000001: its tar 000001.tar is empty (0 bytes)" in page.text
        assert "000000.tar is empty" not in page.text
        image = httpx.get(server.url + "/img/1/anything.jpg", timeout=60)
        assert image.status_code == 404 and "000001.tar is empty (0 bytes)" in image.json()["detail"]
        # The other shards' images are still served.
        manifest_member = _a_member_of(store, shard=0)
        assert httpx.get(f"{server.url}/img/0/{manifest_member}", timeout=60).status_code == 200
    finally:
        server.stop()
    log = (tmp_path / "browse.log").read_text()
    assert "warning: shard 000001: its tar 000001.tar is empty (0 bytes)" in log, log
    assert "Traceback" not in log, log


def _a_member_of(store, shard: int) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(store / "manifest" / f"{shard:06d}.parquet", columns=["member", "status"])
    return next(m for m, s in zip(table["member"].to_pylist(), table["status"].to_pylist()) if m and s == "ok")


def test_browse_sends_security_headers_and_answers_only_loopback_names(small_store, tmp_path):
    server = Process(["browse", str(small_store), "--port", "{port}"], cwd=tmp_path,
                     log=tmp_path / "browse.log").start("/")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            member = _a_member_of(small_store, shard=0)
            for path in ("/", "/static/style.css", f"/img/0/{member}", "/img/0/missing.jpg", "/?sort=nonsense"):
                assert_security_headers(client.get(path), path)
            assert client.get("/", headers={"Host": f"localhost:{server.port}"}).status_code == 200
            rebound = client.get("/", headers={"Host": "evil.example"})
            assert rebound.status_code == 421 and "sources in" not in rebound.text
            assert client.get(f"/img/0/{member}", headers={"Host": "evil.example"}).status_code == 421
    finally:
        server.stop()
    assert json.loads((small_store / "genview.json").read_text())["format"]  # the pristine store stays whole
