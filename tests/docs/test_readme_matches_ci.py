"""The README's test command is CI's (`bash .ci/run`), and its install line uses the files .ci/run installs with."""

from __future__ import annotations

import shlex

from markdown_blocks import REPO, parse

CI_RUN = REPO / ".ci" / "run"


def pip_inputs(command_line: str) -> dict[str, list[str]]:
    """The constraint (-c) and requirement (-r) files of a `pip install` command line."""
    words = shlex.split(command_line, comments=True)
    found: dict[str, list[str]] = {"constraints": [], "requirements": []}
    for flag, value in zip(words, words[1:]):
        if flag in ("-c", "--constraint"):
            found["constraints"].append(value)
        elif flag in ("-r", "--requirement"):
            found["requirements"].append(value)
    return found


def ci_install_line() -> str:
    lines = [line for line in CI_RUN.read_text().splitlines()
             if "pip" in line and " install " in line and " -e " in line and not line.lstrip().startswith("#")]
    assert len(lines) == 1, f".ci/run should install genview with one pip line, found: {lines}"
    return lines[0]


def test_readme_tells_to_run_ci_run_under_a_test_heading():
    blocks, _ = parse(REPO / "README.md")
    commands = [block for block in blocks if "bash .ci/run" in (line.strip() for line in block.body.splitlines())]
    assert commands, "README.md has no fenced block with the line `bash .ci/run`"
    assert any("test" in block.heading.lower() for block in commands), [block.heading for block in commands]


def test_readme_install_line_uses_ci_runs_constraints_and_requirements():
    blocks, _ = parse(REPO / "README.md")
    installs = [line for block in blocks for line in block.body.splitlines() if ".venv/bin/pip install" in line]
    assert installs, "README.md has no `.venv/bin/pip install` line in a fenced block"
    ci = pip_inputs(ci_install_line())
    # CI adds only test-only requirement files (e.g. the outside plugin package of tests/plugins).
    shared = {"constraints": ci["constraints"],
              "requirements": [name for name in ci["requirements"] if not name.startswith("requirements-test")]}
    assert shared == {"constraints": ["constraints.txt"], "requirements": ["requirements-ci.txt"]}, ci
    for line in installs:
        assert pip_inputs(line) == shared, f"README: {line!r}\n.ci/run: {ci_install_line()!r}"
    for name in ci["constraints"] + ci["requirements"]:
        assert (REPO / name).is_file(), name


def test_ci_run_installs_the_test_and_docs_extras_and_runs_every_install_script():
    line, text = ci_install_line(), CI_RUN.read_text()
    assert "'.[test,docs]'" in line
    assert "for script in .ci/install-*.sh" in text and sorted(p.name for p in (REPO / ".ci").glob("install-*.sh"))
    assert '-m pytest' in text.splitlines()[-1]


def test_pip_inputs_reads_both_spellings():
    assert pip_inputs("python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -r requirements-ci.txt -e '.[api]'") \
        == {"constraints": ["constraints.txt"], "requirements": ["requirements-ci.txt"]}
    assert pip_inputs('"$venv/bin/pip" install --constraint c.txt --requirement r.txt -e .  # note') \
        == {"constraints": ["c.txt"], "requirements": ["r.txt"]}
