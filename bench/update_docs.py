"""Rerun the bench commands quoted in docs/ and rewrite their output blocks.

A figure in the docs is quoted as the output of the command that printed it:

    <!-- bench: python bench/bench_engine.py --rate 1000 -->
    ```text
    $ python bench/bench_engine.py --rate 1000
    ...what it printed...
    ```

This script runs each such command from the repository root (through bash, so loops work) and
replaces the fenced block under its marker with ``$ COMMAND`` and the command's output, so the docs
never carry a pasted figure that no command printed. ``--only TEXT`` reruns just the markers whose
command contains TEXT; ``--list`` prints the markers and runs nothing.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- bench: (?P<command>.+?) -->\n```(?P<lang>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)


def bench_blocks(text: str) -> list[re.Match]:
    """Return every bench marker with the fenced block right under it."""
    return list(MARKER.finditer(text))


def render(command: str, output: str, lang: str) -> str:
    """The marker and its block for ``command`` having printed ``output``."""
    body = output if output.endswith("\n") or not output else output + "\n"
    return f"<!-- bench: {command} -->\n```{lang}\n$ {command}\n{body}```"


def update_text(text: str, run, only: str | None = None) -> tuple[str, int]:
    """Rewrite the blocks of ``text`` whose command contains ``only`` with ``run(command)``'s output."""
    count = 0

    def replace(match: re.Match) -> str:
        nonlocal count
        command = match["command"]
        if only is not None and only not in command:
            return match.group(0)
        count += 1
        return render(command, run(command), match["lang"] or "text")

    return MARKER.sub(replace, text), count


def run_command(command: str) -> str:
    """Run ``command`` from the repository root; its stdout, or an error naming it."""
    print(f"running: {command}", file=sys.stderr, flush=True)
    done = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench command failed ({done.returncode}): {command}\n{done.stderr[-2000:]}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="rerun only the markers whose command contains this text")
    parser.add_argument("--list", action="store_true", help="list the markers and run nothing")
    parser.add_argument("--docs", default=str(REPO / "docs"), help="folder of the docs pages (default: docs/)")
    args = parser.parse_args(argv)
    pages = sorted(Path(args.docs).rglob("*.md"))
    if args.list:
        for page in pages:
            for match in bench_blocks(page.read_text()):
                print(f"{page.relative_to(REPO) if page.is_relative_to(REPO) else page}: {match['command']}")
        return 0
    total = 0
    for page in pages:
        text = page.read_text()
        new, count = update_text(text, run_command, args.only)
        if count:
            page.write_text(new)
            print(f"{page.name}: {count} block(s) rewritten", file=sys.stderr)
        total += count
    print(f"{total} bench block(s) rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
