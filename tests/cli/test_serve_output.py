"""What a person sees around a real `genview serve`: a quiet start-up, and client output piped into `head`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from live_process import ServerProcess


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve-output")
    server = ServerProcess(["serve", "--no-auth", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "info"],
                           cwd=base, log=base / "server.log")
    server.start("/healthz")
    yield server
    server.stop()


def test_serve_starts_without_alembic_lines(service):
    log = service.log.read_text()
    assert "Application startup complete" in log, log  # INFO lines are shown: the check below is not vacuous
    assert "alembic" not in log.lower(), log
    assert (service.log.parent / "genview-jobs.sqlite").exists()  # the migrations did run


@pytest.mark.parametrize("argv", [["jobs", "--json"], ["jobs"]])
def test_client_output_into_a_closed_pipe_is_quiet(service, argv):
    # `genview jobs --json | head -0`: the reader is gone before genview writes.
    proc = subprocess.Popen([sys.executable, "-m", "genview.cli.main", *argv, "--server", service.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, stderr  # what a shell reports for a writer ended by SIGPIPE
    assert stderr == "", stderr


def test_the_demo_folder_is_git_ignored():
    # `genview demo` (the README's quick start) writes genview-demo/ into the clone.
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", "genview-demo/preview.png"], timeout=60)
    assert result.returncode == 0, "genview-demo/ is not in .gitignore"
