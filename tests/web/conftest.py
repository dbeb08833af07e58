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
    """A fresh tab that records every JavaScript dialog (an alert would mean escaping failed)."""
    tab = browser.new_page()
    tab.dialogs = []

    def on_dialog(dialog):
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    yield tab
    tab.close()


@pytest.fixture(scope="session")
def web_sources(tmp_path_factory):
    """The image folder of the browser tests."""
    return make_sources(tmp_path_factory.mktemp("web-images") / "imgs")
