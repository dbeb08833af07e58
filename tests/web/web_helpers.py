"""Helpers of the browser tests: servers in subprocesses, the test images, screenshots."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CHROMIUM = os.environ.get("GENVIEW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: Screenshots go to $GENVIEW_SCREENSHOTS (the README's come from GENVIEW_SCREENSHOTS=docs), else a temp folder.
SCREENSHOTS = Path(os.environ.get("GENVIEW_SCREENSHOTS") or tempfile.mkdtemp(prefix="genview-screenshots-"))
EVIL = "<img src=x onerror=alert(1)>"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A genview server command in its own session, waited for until `ready_path` answers 200."""

    def __init__(self, args: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [a.replace("{port}", str(self.port)) for a in args]
        self.cwd, self.log, self.env = cwd, log, env or {}
        self.proc: subprocess.Popen | None = None

    def start(self, ready_path: str, timeout: float = 120.0) -> "Process":
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENVIEW_")}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **self.env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "genview.cli.main", *self.args], cwd=self.cwd, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.args[0]} did not answer within {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM the server (its job workers live in their own sessions and end with their jobs)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


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
