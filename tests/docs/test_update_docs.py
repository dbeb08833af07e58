"""bench/update_docs.py: a bench block in the docs is rewritten with what its command prints now."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_update_docs():
    spec = importlib.util.spec_from_file_location("update_docs", REPO / "bench" / "update_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PAGE = """# A page

Text before.

<!-- bench: python -c "print('ratio 0.97')" -->
```text
$ python -c "print('ratio 0.42')"
ratio 0.42
```

<!-- bench: echo other -->
```text
$ echo other
stale
```

Text after.
"""


def test_a_bench_block_is_replaced_by_what_its_command_prints(tmp_path):
    update_docs = load_update_docs()
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    assert update_docs.main(["--docs", str(tmp_path), "--only", "print("]) == 0
    text = page.read_text()
    assert "ratio 0.97\n```" in text and "ratio 0.42" not in text
    assert "$ echo other\nstale\n```" in text            # --only left the other block alone
    assert text.startswith("# A page\n\nText before.") and text.endswith("Text after.\n")


def test_a_failing_bench_command_stops_and_leaves_the_page_as_it_was(tmp_path):
    update_docs = load_update_docs()
    page = tmp_path / "page.md"
    page.write_text(PAGE.replace("echo other", f"{sys.executable} -c 'raise SystemExit(3)'"))
    before = page.read_text()
    try:
        update_docs.main(["--docs", str(tmp_path)])
    except SystemExit as stop:
        assert "bench command failed (3)" in str(stop)
    else:
        raise AssertionError("a failing bench command must stop the update")
    assert page.read_text() == before


def test_every_bench_marker_in_the_docs_has_a_fenced_block_under_it():
    update_docs = load_update_docs()
    for page in sorted((REPO / "docs").rglob("*.md")):
        text = page.read_text()
        markers = sum(line.startswith("<!-- bench: ") for line in text.splitlines())
        assert markers == len(update_docs.bench_blocks(text)), f"{page.name}: a bench marker without its block"
