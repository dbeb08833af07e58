"""The documentation site builds with `mkdocs build --strict`: a broken link or a page missing from the nav fails CI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from markdown_blocks import REPO


def mkdocs() -> list[str]:
    """The mkdocs of this venv (the docs extra); missing: a failure in CI, a skip on a developer's machine."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        message = "mkdocs / mkdocs-material not installed: pip install -c constraints.txt -e '.[docs]'"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return [sys.executable, "-m", "mkdocs"]


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*mkdocs(), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
                          capture_output=True, text=True, timeout=300, cwd=config.parent)


def test_the_docs_site_builds_strictly(tmp_path):
    config = REPO / "mkdocs.yml"
    assert config.exists(), "mkdocs.yml is missing at the repository root"
    result = build(config, tmp_path / "site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert (tmp_path / "site" / "index.html").exists()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    # A sample site (not the project's): the same strict build must fail on a link to a missing page.
    (tmp_path / "docs").mkdir()
    (tmp_path / "mkdocs.yml").write_text(textwrap.dedent("""\
        site_name: sample
        theme:
          name: material
        nav:
          - Home: index.md
          - Install: install.md
        """))
    (tmp_path / "docs" / "install.md").write_text("# Install\n\nSee [home](index.md).\n")
    page = tmp_path / "docs" / "index.md"
    page.write_text("# Sample\n\nSee [the install page](install.md) and [nothing](missing.md).\n")
    broken = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert broken.returncode != 0 and "missing.md" in broken.stderr, broken.stderr[-3000:]
    page.write_text("# Sample\n\nSee [the install page](install.md).\n")
    fixed = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert (tmp_path / "site" / "install" / "index.html").exists()
