"""`genview browse STORE` in a real headless Chromium: overview, sorting, filtering, paging, escaping, images."""

from __future__ import annotations

import re

import httpx
import pytest

from web_helpers import EVIL, Process, save_screenshot, wait_until


def _make_store(out, source, weights, **extra):
    from genview.pipeline.runner import generate
    from genview.pipeline.spec import GenerateSpec

    spec = GenerateSpec(source=str(source), out=str(out), model="icgan", weights=weights, k=3, shard_size=5,
                        batch_size=8, device="cpu", **extra)
    generate(spec, progress=False)
    return out


@pytest.fixture(scope="module")
def browse(tmp_path_factory, web_sources, tiny_weights):
    """`genview browse` of a small interpolated store (13 sources, one undecodable, a class named like an XSS payload).

    Interpolated, so the pages show every column (source, secondary, views with their weight); the
    plain layout is on the dashboard's store page (test_dashboard.py).
    """
    base = tmp_path_factory.mktemp("browse")
    store = _make_store(base / "store", web_sources, tiny_weights("icgan"), interpolate=True, alphas=[0.3, 0.7])
    server = Process(["browse", str(store), "--port", "{port}"], cwd=base, log=base / "browse.log").start("/")
    yield server
    server.stop()


def _worst(page) -> list[float]:
    return [float(v) for v in page.locator("#grid .row").evaluate_all("rows => rows.map(r => r.dataset.worst)")]


def test_overview_counts_weights_histogram_classes_failures(browse, page):
    page.goto(browse.url + "/")
    assert "13 sources in 3 shards (3 done): 12 ok, 1 failed, 36 views" in page.locator("#store-counts").inner_text()
    assert "RANDOM weights" in page.locator("#random-weights").inner_text()
    assert page.locator("#histogram rect").count() == 20
    counts = [int(re.search(r": (\d+) views", t).group(1)) for t in page.locator("#histogram rect title").all_text_contents()]
    assert sum(counts) == 36
    classes = page.locator("#per-class tbody tr td:first-child").all_text_contents()
    assert sorted(classes) == sorted(["class_00", "class_01", EVIL])
    failure = page.locator("#failures tbody tr").inner_text()
    assert "<b onmouseover=alert(2)>broken.jpg" in failure and "alert" not in failure.split(".jpg", 1)[1]
    # Every image on the page is served from its tar member and decodes in the browser.
    # (Lazy images: scroll so every one is requested, then wait for all to decode.)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    wait_until(page, "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#grid img").count() == 12 * (1 + 1 + 3)  # source, secondary, 3 views
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page, "store-page.png")


def test_sort_worst_first_and_best_first(browse, page):
    page.goto(browse.url + "/")
    page.select_option("#f-sort", "best")
    page.click("#f-apply")
    page.wait_for_url(re.compile(r"sort=best"))
    best = _worst(page)
    assert best == sorted(best, reverse=True) and len(best) == 12
    page.select_option("#f-sort", "worst")
    page.click("#f-apply")
    page.wait_for_url(lambda url: "sort=best" not in url)
    worst = _worst(page)
    assert worst == sorted(worst) and worst[0] == min(best)
    # Each row's "worst" is the least similar of its own views.
    first_row_sims = [float(s) for s in page.locator("#grid .row").first.locator(".sim").all_text_contents()]
    assert min(first_row_sims) == pytest.approx(worst[0], abs=1e-3)


def test_filter_by_class_and_similarity_range_and_paging(browse, page):
    page.goto(browse.url + "/")
    page.select_option("#f-label", "class_01")
    page.click("#f-apply")
    page.wait_for_url(re.compile(r"label=class_01"))
    labels = page.locator("#grid .row").evaluate_all("rows => rows.map(r => r.dataset.label)")
    assert labels == ["class_01"] * 4
    # Clicking a histogram bar filters to its similarity range.
    page.goto(browse.url + "/")
    page.locator("#histogram a").nth(19).click()
    page.wait_for_url(re.compile(r"min="))
    low, high = float(page.input_value("#f-min")), float(page.input_value("#f-max"))
    sims = [float(s) for s in page.locator("#grid .sim").all_text_contents()]
    assert sims and all(low - 1e-3 <= s <= high + 1e-3 for s in sims)
    page.goto(browse.url + "/?per_page=10")
    assert page.locator("#grid .row").count() == 10
    page.click("#next-page")
    page.wait_for_url(re.compile(r"page=2"))
    assert page.locator("#grid .row").count() == 2
    assert "page 2 of 2" in page.locator("#grid-count").inner_text()


def test_user_text_is_escaped(browse, page):
    page.goto(browse.url + "/?" + str(httpx.QueryParams({"label": EVIL})))
    page.wait_for_load_state("networkidle")
    assert page.dialogs == []
    # The payload is text in the class table, the filter and the grid; no element it names exists.
    assert EVIL in page.locator("#per-class").inner_text()
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("#grid .row").evaluate_all("rows => rows.map(r => r.dataset.label)") == [EVIL] * 4
    assert page.locator("#grid .label").first.inner_text() == EVIL
    assert page.locator("#failures b").count() == 0 and page.locator("script").count() == 0


def test_interpolated_store_shows_primary_secondary_and_weight(browse, page):
    page.goto(browse.url + "/")
    assert "α 0.3, 0.7" in page.locator("#store-interpolation").inner_text()
    row = page.locator("#grid .row").first
    assert row.locator("figure.secondary img").count() == 1
    alphas = row.locator(".alpha").all_text_contents()
    assert alphas == ["α 0.30", "α 0.70", "α 0.30"]
    row.locator("figure.secondary img").wait_for()
    wait_until(page, "document.querySelector('#grid figure.secondary img').naturalWidth > 0")


def test_bad_query_and_unknown_member_are_refused(browse):
    response = httpx.get(browse.url + "/", params={"min": "abc"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "min"]
    assert httpx.get(browse.url + "/img/0/..%2F..%2Fgenview.json").status_code == 404
    assert httpx.get(browse.url + "/img/0/0000000099.v0.jpg").status_code == 404
