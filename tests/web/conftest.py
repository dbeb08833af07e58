"""Browser tests: a real headless Chromium (Debian's package) driven by Playwright, real servers on loopback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # web_helpers.py beside this file
sys.path.insert(0, str(Path(__file__).parent.parent / "s3"))  # the S3 server fixtures

from moto_s3 import s3_bucket, s3_server  # noqa: E402,F401  (fixtures)
from web_helpers import CHROMIUM, CHROMIUM_ARGS, make_sources  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium per module with a fresh user-data-dir; yields its browser context."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: run .ci/install-chromium.sh (Debian package `chromium`)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture()
def page(browser):
    """A fresh tab that records every JavaScript dialog (an alert would mean escaping failed) and CSP violation."""
    tab = browser.new_page()
    tab.dialogs = []

    def on_dialog(dialog):
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    # Every page is served with a strict Content-Security-Policy: anything it blocks (an inline style or
    # script, a foreign image) is a broken page, reported by Chromium on the console.
    tab.csp_violations = []
    tab.on("console", lambda message: tab.csp_violations.append(message.text)
           if "Content Security Policy" in message.text else None)
    yield tab
    violations = list(tab.csp_violations)
    tab.close()
    assert not violations, f"the page broke its Content-Security-Policy: {violations[:3]}"


@pytest.fixture(scope="session")
def web_sources(tmp_path_factory):
    """The image folder of the browser tests."""
    return make_sources(tmp_path_factory.mktemp("web-images") / "imgs")
