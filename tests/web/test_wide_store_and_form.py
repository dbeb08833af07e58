"""Store pages fit K=10 views on a 1280 px screen; the dashboard's form asks only what the service takes; the job
page says when the weights were random."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from web_helpers import Process, save_screenshot

TOKEN = "wide-form-token-0123456789"


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory, tiny_weights):
    """An interpolated store with K=10 (source, secondary and ten views per row: the widest row there is)."""
    from genview.pipeline.runner import generate
    from genview.pipeline.spec import GenerateSpec
    from genview.synthetic_data import make_image_folder

    base = tmp_path_factory.mktemp("wide")
    make_image_folder(base / "src", classes=2, per_class=2, size=48, seed=6)
    generate(GenerateSpec(source=str(base / "src"), out=str(base / "store"), model="icgan", weights=tiny_weights("icgan"),
                          k=10, shard_size=4, batch_size=20, device="cpu", interpolate=True), progress=False)
    return base / "store"


def test_ten_views_fit_a_1280_px_screen(wide_store, page):
    assert page.viewport_size["width"] == 1280
    server = Process(["browse", str(wide_store), "--port", "{port}"], cwd=wide_store.parent,
                     log=wide_store.parent / "browse.log").start("/")
    try:
        page.goto(server.url + "/")
        rows = page.locator("#grid .row")
        assert rows.count() == 4
        for i in range(rows.count()):
            row = rows.nth(i)
            assert row.locator("figure.view").count() == 10
            assert row.evaluate("r => r.scrollWidth <= r.clientWidth"), "the row scrolls: a view is cut off"
            last = row.locator("figure.view").last.bounding_box()
            assert last["x"] + last["width"] <= 1280 and last["width"] >= 48, last
        save_screenshot(page, "store-page-k10.png")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_weights):
    """`genview serve` with its defaults (requests may not set workers), one token, a small image folder."""
    from genview.synthetic_data import make_image_folder

    base = tmp_path_factory.mktemp("form-service")
    make_image_folder(base / "imgs", classes=2, per_class=2, size=48, seed=7)
    weights = base / "weights"
    shutil.copytree(tiny_weights("icgan"), weights)
    (base / "genview.toml").write_text(f'reconcile_interval = 0.3\n\n[tokens."{TOKEN}"]\nname = "ann"\n')
    server = Process(["serve", "--host", "127.0.0.1", "--port", "{port}", "--settings", str(base / "genview.toml"),
                      "--log-level", "warning"], cwd=base, log=base / "server.log",
                     env={"GENVIEW_DATABASE_URL": f"sqlite:///{base / 'jobs.sqlite'}"})
    server.start("/healthz")
    yield server
    server.stop()


def _labels(html: str) -> dict[str, str]:
    return dict(re.findall(r'<label for="spec-([a-z_]+)">([^<]*)</label>', html))


def test_the_form_asks_only_what_the_service_takes(service):
    html = httpx.get(service.url + "/", timeout=30).text
    labels = _labels(html)
    assert labels["source"] == "source *" and labels["weights"] == "weights *"
    assert labels["model"] == "model" and labels["k"] == "k"  # a recipe may stand for them
    assert "workers" not in labels  # this service refuses workers from requests (max_workers = 0)
    assert {"batch_size", "io_threads", "threads"} <= set(labels)
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        refused = client.post("/v1/jobs", json={"source": "imgs", "model": "icgan", "weights": "weights", "workers": 2})
        assert refused.status_code == 422 and "workers" in refused.text
        # What the form sends with model left empty and a recipe named: accepted.
        job = client.post("/v1/jobs", json={"source": "imgs", "recipe": "daicgan-icgan", "weights": "weights", "k": 1,
                                            "shard_size": 4})
        assert job.status_code in (200, 201, 202), job.text
        job_id = job.json()["id"]
        deadline = time.monotonic() + 240
        while (state := client.get(f"/v1/jobs/{job_id}").json()["state"]) not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, client.get(f"/v1/jobs/{job_id}/logs").text
            time.sleep(0.5)
        assert state == "succeeded", client.get(f"/v1/jobs/{job_id}/logs").text
        fragment = client.get(f"/ui/jobs/{job_id}").text
    assert 'id="random-weights"' in fragment and "not from a trained model" in fragment
    # `genview status JOB --json | head -0`: the reader is gone before genview writes; no "Broken pipe".
    proc = subprocess.Popen([sys.executable, "-m", "genview.cli.main", "status", job_id, "--json", "--server", service.url,
                             "--token", TOKEN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and stderr == "", stderr


def test_an_operator_who_allows_workers_gets_the_field():
    from genview.api.settings import Settings
    from genview.web.dashboard import form_fields

    names = {field["name"] for field in form_fields(Settings(auth_disabled=True, max_workers=4))[0]}
    assert "workers" in names
    names = {field["name"] for field in form_fields(Settings(auth_disabled=True))[0]}
    assert "workers" not in names and "source" in names
