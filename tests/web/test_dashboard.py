"""The dashboard of `genview serve` in a real headless Chromium: token login, submit form, live progress, cancel, store pages."""

from __future__ import annotations

import re
import shutil
import time

import httpx
import pytest

from web_helpers import EVIL, Process, save_screenshot, wait_until

ALICE = "alice-web-token-0123456789"
BOB = "bob-web-token-0123456789"


@pytest.fixture(scope="module")
def service(tmp_path_factory, web_sources, tiny_weights):
    """`genview serve` with two tokens, the test images, a 60-image folder (one slow shard) and tiny IC-GAN weights."""
    from genview.synthetic_data import make_image_folder

    base = tmp_path_factory.mktemp("web-service")
    shutil.copytree(web_sources, base / "imgs")  # a copy: a symlink would resolve outside the service's roots
    make_image_folder(base / "big", classes=2, per_class=30, size=48, seed=5)
    weights = tiny_weights("icgan")
    settings = base / "genview.toml"
    settings.write_text(f"""
model_roots = ["{weights}"]
max_running_jobs = 2
reconcile_interval = 0.3
progress_cache_seconds = 0.1
cancel_grace_seconds = 5

[tokens."{ALICE}"]
name = "alice"

[tokens."{BOB}"]
name = "bob"
""")
    server = Process(["serve", "--host", "127.0.0.1", "--port", "{port}", "--settings", str(settings), "--log-level", "warning"],
                     cwd=base, log=base / "server.log", env={"GENVIEW_DATABASE_URL": f"sqlite:///{base / 'jobs.sqlite'}"})
    server.start("/healthz")
    server.weights = weights
    yield server
    server.stop()


def login(page, service, token=ALICE):
    page.goto(service.url + "/")
    page.fill("#token", token)
    page.click("#login-button")


def api(service, token=ALICE) -> httpx.Client:
    return httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def wait_state(service, job_id, states=("succeeded", "failed", "cancelled"), timeout=240.0) -> dict:
    with api(service) as client:
        deadline = time.monotonic() + timeout
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            assert time.monotonic() < deadline, client.get(f"/v1/jobs/{job_id}/logs").text
            time.sleep(0.3)


def test_login_keeps_the_token_for_this_tab_only(service, page, browser):
    login(page, service, token="wrong-token")
    page.wait_for_selector("#login-error:has-text('did not accept')")
    assert page.locator("#authed").is_hidden()
    login(page, service)
    page.wait_for_selector("#authed", state="visible")
    page.wait_for_selector("#jobs #no-jobs, #jobs #jobs-table")
    assert page.evaluate("sessionStorage.getItem('genview-token')") == ALICE
    page.reload()  # same tab: still signed in
    page.wait_for_selector("#authed", state="visible")
    other = browser.new_page()  # another tab: asks again
    other.goto(service.url + "/")
    other.wait_for_selector("#login", state="visible")
    other.close()


def test_form_is_the_job_schema_and_422_shows_next_to_its_field(service, page):
    login(page, service)
    page.wait_for_selector("#submit-form", state="visible")
    names = page.locator("#submit-form [data-kind]").evaluate_all("inputs => inputs.map(i => i.name)")
    from genview.api.schemas import JobCreate

    # All of the job schema but where jobs run and what this service refuses (workers: max_workers is 0).
    assert set(names) == set(JobCreate.model_fields) - {"ray_address", "workers"}
    page.fill("#spec-source", "imgs")
    page.fill("#spec-model", "icgan")
    page.fill("#spec-weights", service.weights)
    page.fill("#spec-k", "0")
    page.click("#submit-button")
    page.wait_for_selector("#error-k:has-text('greater than or equal to 1')")
    assert page.locator("#error-source").inner_text() == ""
    page.fill("#spec-k", "2")
    page.fill("#spec-weights", "no/such/weights")
    page.click("#submit-button")
    page.wait_for_selector("#error-weights:has-text('does not exist')")
    assert page.locator("#error-k").inner_text() == ""
    page.fill("#spec-params", "{not json")
    page.click("#submit-button")
    page.wait_for_selector("#error-params:has-text('not valid JSON')")


def test_submit_watch_progress_inside_the_first_shard_then_cancel(service, page):
    login(page, service)
    page.wait_for_selector("#submit-form", state="visible")
    for field, value in {"id": "slow-job", "source": "big", "model": "icgan", "weights": service.weights, "k": "32",
                         "shard_size": "60", "batch_size": "4", "out": "big-store"}.items():
        page.fill(f"#spec-{field}", value)
    page.click("#submit-button")
    page.wait_for_url(re.compile(r"/jobs/slow-job$"))
    page.wait_for_selector("#job-state:has-text('running')", timeout=60_000)
    # The only shard holds all 60 sources: any count between 0 and 60 was reported from inside it.
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        progress = page.locator("#job-progress")
        done = int(progress.get_attribute("data-sources-done") or 0)
        if 0 < done < 60:
            seen.append(done)
            if len(set(seen)) >= 2:
                break
        time.sleep(0.3)
    assert len(set(seen)) >= 2 and seen[-1] > seen[0], f"no progress seen inside the shard: {seen}"
    with api(service) as client:
        job = client.get("/v1/jobs/slow-job").json()
    assert job["progress"]["shards_done"] == 0 and job["progress"]["sources_in_running_shards"] > 0, job["progress"]
    assert job["progress"]["views_written"] > 0 and job["progress"]["views_per_second"] > 0
    assert "views/s" in page.locator("#job-progress").inner_text()
    assert '"shard_size": 60' in page.locator("#job-spec").inner_text()
    page.wait_for_selector("#job-log:has-text('RANDOMLY INITIALISED')")
    save_screenshot(page, "job-page.png")
    page.click("#cancel-button")
    # K=32 x 60 sources keeps the job running well past the click (with K=8 it once finished first).
    ended = wait_state(service, "slow-job")
    assert ended["state"] == "cancelled", ended
    page.wait_for_selector("#job-state:has-text('cancelled')", timeout=60_000)
    assert page.locator("#cancel-button").count() == 0


def test_store_page_of_a_job_sort_filter_and_escaping(service, page):
    with api(service) as client:
        response = client.post("/v1/jobs", json={"id": "small-job", "source": "imgs", "model": "icgan",
                                                 "weights": service.weights, "k": 2, "shard_size": 5, "out": "small-store"})
        assert response.status_code == 201, response.text
    assert wait_state(service, "small-job")["state"] == "succeeded"
    login(page, service)
    row = page.locator("#jobs-table tr[data-job='small-job']")
    row.wait_for()
    assert row.get_attribute("data-state") == "succeeded" and "12/13" not in row.inner_text()
    assert "13/13" in row.locator(".sources-done").inner_text()
    row.locator("a").first.click()
    page.wait_for_url(re.compile(r"/jobs/small-job$"))
    page.click("#store-link")
    page.wait_for_selector("#grid .row")
    assert "12 ok, 1 failed, 24 views" in page.locator("#store-counts").inner_text()
    wait_until(page, "[...document.querySelectorAll('#grid img')].slice(0, 6).every(i => i.complete && i.naturalWidth > 0)")
    page.select_option("#f-sort", "worst")
    page.click("#f-apply")
    page.wait_for_selector("#grid .row")
    worst = [float(v) for v in page.locator("#grid .row").evaluate_all("rows => rows.map(r => r.dataset.worst)")]
    assert len(worst) == 12 and worst == sorted(worst)
    page.select_option("#f-label", EVIL)
    page.click("#f-apply")
    page.wait_for_url(re.compile(r"label="))
    page.wait_for_selector("#grid .row")
    labels = page.locator("#grid .row").evaluate_all("rows => rows.map(r => r.dataset.label)")
    assert labels == [EVIL] * 4
    assert EVIL in page.locator("#grid .label").first.inner_text()
    assert page.locator('img[src="x"]').count() == 0 and page.dialogs == []
    save_screenshot(page, "job-store-page.png")


def test_fragments_need_a_token_images_a_signature_and_jobs_stay_private(service):
    assert httpx.get(service.url + "/ui/jobs").status_code == 401
    with api(service, BOB) as bob:
        assert bob.get("/ui/jobs/small-job").status_code == 404
        assert bob.get("/ui/jobs/small-job/store").status_code == 404
    with api(service) as alice:
        html = alice.get("/ui/jobs/small-job/store").text
    url = re.search(r'src="(/ui/img/[^"]+)"', html).group(1).replace("&amp;", "&")
    assert httpx.get(service.url + url).status_code == 200
    tampered = re.sub(r"sig=[0-9a-f]", "sig=z", url)
    assert httpx.get(service.url + tampered).status_code == 403
    other_job = re.sub(r"^/ui/img/[^/]+/", "/ui/img/slow-job/", url)  # another job's id under this signature
    assert other_job != url and httpx.get(service.url + other_job).status_code == 403
