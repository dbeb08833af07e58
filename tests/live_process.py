"""Helpers shared by the tests that start real servers: free loopback ports and genview servers in subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port nobody listens on right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A `genview` server command in its own session (so a test can SIGKILL just it), ready once `ready_path` answers 200.

    `{port}` in the arguments becomes the free port picked for it; the server keeps that port across restarts.
    """

    def __init__(self, args: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [a.replace("{port}", str(self.port)) for a in args]
        self.cwd, self.log, self.env = cwd, log, dict(env or {})
        self.proc: subprocess.Popen | None = None

    def start(self, ready_path: str = "/healthz", timeout: float = 120.0) -> "ServerProcess":
        """Start the command and wait until it answers; raise with its log if it exits or never answers."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENVIEW_")}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **self.env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "genview.cli.main", *self.args], cwd=self.cwd, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited with {self.proc.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.args[0]} did not answer {ready_path} within {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the server process only (job workers live in their own sessions)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM), by force if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def assert_security_headers(response: httpx.Response, where: str) -> None:
    """The security headers every response of `genview serve` and `genview browse` carries (issue 19)."""
    headers = response.headers
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, f"{where}: CSP {csp!r}"
    if "/docs" not in where and "/redoc" not in where:
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp, f"{where}: CSP {csp!r}"
    assert headers.get("x-frame-options") == "DENY", where
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("referrer-policy") in ("no-referrer", "same-origin"), where
