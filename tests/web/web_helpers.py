"""Helpers of the browser tests: servers in subprocesses, the test images, screenshots."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from live_process import ServerProcess

CHROMIUM = os.environ.get("GENVIEW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: Screenshots go to $GENVIEW_SCREENSHOTS (the README's come from GENVIEW_SCREENSHOTS=docs), else a temp folder.
SCREENSHOTS = Path(os.environ.get("GENVIEW_SCREENSHOTS") or tempfile.mkdtemp(prefix="genview-screenshots-"))
EVIL = "<img src=x onerror=alert(1)>"


#: A genview server command in a subprocess (the shared helper of every server test).
Process = ServerProcess


def make_sources(root: Path, per_class: int = 4) -> Path:
    """Images in three classes, one class named like an XSS payload, plus an undecodable file with markup in its name."""
    from genview.synthetic_data import make_image_folder

    make_image_folder(root, classes=3, per_class=per_class, size=48, seed=3)
    os.rename(root / "class_02", root / EVIL)
    (root / "class_00" / "<b onmouseover=alert(2)>broken.jpg").write_bytes(b"not an image <script>alert(2)</script>")
    return root


def save_screenshot(page, name: str) -> Path:
    """Save a PNG of the whole page into SCREENSHOTS; check it is a real PNG."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll a JavaScript expression until it is true. Not page.wait_for_function: that evaluates the
    expression with eval inside the page, which the pages' Content-Security-Policy forbids."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {expression}")
        time.sleep(0.1)
