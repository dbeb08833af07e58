"""Every fenced block marked `<!-- runnable -->` in README.md and docs/**/*.md runs and exits 0 (one test per block)."""

from __future__ import annotations

import textwrap

import pytest

from markdown_blocks import doc_files, failure_report, parse, run_block

BLOCKS = [block for path in doc_files() for block in parse(path)[0] if block.runnable]


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_runnable_block_exits_0(block, tmp_path):
    result = run_block(block, cwd=tmp_path)
    assert result.returncode == 0, failure_report(block, result)


def test_docs_have_runnable_blocks_and_every_mark_marks_one():
    assert BLOCKS, "no block of README.md or docs/ is marked <!-- runnable -->"
    stray = {path.name: lines for path in doc_files() if (lines := parse(path)[1])}
    assert stray == {}, f"runnable marks not followed by a fenced block (file: lines): {stray}"


SAMPLE = textwrap.dedent("""\
    # Sample

    ```bash
    exit 1
    ```

    <!-- runnable -->
    ```bash
    echo "repo=$GENVIEW_REPO" > out.txt
    test "$(cat out.txt)" = "repo=$GENVIEW_REPO"
    genview --version
    ```

    ## Python
    <!-- runnable -->

    ~~~python
    import genview, pathlib
    print(pathlib.Path.cwd())
    ~~~

    <!-- runnable -->
    ```bash
    false | cat
    echo "never reached"
    ```

    <!-- runnable -->
    Not a fence: this mark marks nothing.
    """)


def test_the_runner_marks_runs_and_reports(tmp_path):
    page = tmp_path / "sample.md"
    page.write_text(SAMPLE)
    blocks, stray = parse(page)
    assert [(b.line, b.language, b.runnable) for b in blocks] == [
        (3, "bash", False), (8, "bash", True), (17, "python", True), (23, "bash", True)]
    assert blocks[2].heading == "Python" and stray == [28]
    work = tmp_path / "work"
    work.mkdir()
    ok, python, failing = (run_block(block, cwd=work) for block in blocks[1:])
    assert ok.returncode == 0, failure_report(blocks[1], ok)
    assert ok.stdout.startswith("genview ") and (work / "out.txt").exists()  # the venv's genview, run in cwd
    assert python.returncode == 0 and python.stdout.strip() == str(work)
    assert failing.returncode == 1 and "never reached" not in failing.stdout  # pipefail: a failing stage fails
    report = failure_report(blocks[3], failing)
    assert report.startswith(f"{blocks[3].id} (bash) exited 1") and "false | cat" in report
