"""Fenced code blocks of Markdown files, and which of them are marked `<!-- runnable -->` (the docs tests run those)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The line that marks the next fenced block as one the docs tests execute.
RUNNABLE_MARK = "<!-- runnable -->"
#: Fence languages the runner knows, and how it runs them (an unlabelled block holds commands: bash).
BASH_LANGUAGES = ("bash", "sh", "shell", "")
PYTHON_LANGUAGES = ("python", "py")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text, the heading it sits under, whether it is marked."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    body: str
    heading: str
    runnable: bool

    @property
    def id(self) -> str:
        """file:line, the file relative to the repository."""
        path = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path
        return f"{path.as_posix()}:{self.line}"


def parse(path: Path) -> tuple[list[Block], list[int]]:
    """The fenced blocks of a Markdown file, and the lines of runnable marks that mark no block (errors)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    stray: list[int] = []
    heading = ""
    marked_at: int | None = None  # line of a mark still waiting for its fence
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            marker, language = fence.group(1), fence.group(2).lower()
            end = i + 1
            while end < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$", lines[end]):
                end += 1
            blocks.append(Block(path, i + 1, language, "\n".join(lines[i + 1:end]) + "\n", heading, marked_at is not None))
            marked_at = None
            i = end + 1
            continue
        if line.strip() == RUNNABLE_MARK:
            if marked_at is not None:
                stray.append(marked_at)
            marked_at = i + 1
        elif line.strip():
            if marked_at is not None:  # a mark must be followed by its fence (blank lines may stand between)
                stray.append(marked_at)
                marked_at = None
            match = _HEADING.match(line)
            if match:
                heading = match.group(1)
        i += 1
    if marked_at is not None:
        stray.append(marked_at)
    return blocks, stray


def doc_files(root: Path = REPO) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    files = [root / "README.md"] if (root / "README.md").exists() else []
    return files + sorted((root / "docs").rglob("*.md"))


def run_block(block: Block, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Execute a block in `cwd`: bash with -euo pipefail, python with this venv's python.

    The repository root is $GENVIEW_REPO and this venv's bin/ comes first on PATH (its `genview`).
    """
    env = dict(os.environ, GENVIEW_REPO=str(REPO))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if block.language in BASH_LANGUAGES:
        command = ["bash", "-euo", "pipefail", "-c", block.body]
    elif block.language in PYTHON_LANGUAGES:
        command = [sys.executable, "-c", block.body]
    else:
        raise ValueError(f"{block.id}: a runnable block must be bash (or unlabelled) or python, not {block.language!r}")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def failure_report(block: Block, result: subprocess.CompletedProcess) -> str:
    """The block, its exit code and its output: what a reader needs to fix the snippet."""
    return (f"{block.id} ({block.language}) exited {result.returncode}\n"
            f"--- block ---\n{block.body}--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}")
