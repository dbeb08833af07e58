"""The CLI answers at once: --help, --version and the service client verbs import no model stack."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from genview.cli.main import build_parser

HEAVY = ("torch", "torchvision", "ray", "diffusers", "transformers", "webdataset", "pandas", "pyarrow")
CLIENT_VERBS = ("submit", "jobs", "status", "logs", "cancel")


def imported_modules(*argv: str) -> tuple[set[str], subprocess.CompletedProcess]:
    """Run `python -X importtime -m genview.cli.main ARGV` and return the top-level packages it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "genview.cli.main", *argv],
                            capture_output=True, text=True, timeout=60)
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names, result


@pytest.mark.parametrize("argv", [("--version",), ("--help",)] + [(verb, "--help") for verb in CLIENT_VERBS])
def test_help_version_and_client_verbs_import_nothing_heavy(argv):
    names, result = imported_modules(*argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "genview" in names  # the import log is real
    assert sorted(set(HEAVY) & names) == []


def test_version_answers_well_under_a_second():
    timings = []
    for _ in range(3):  # best of three: the machine is shared
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "genview.cli.main", "--version"], capture_output=True,
                                text=True, timeout=60)
        timings.append(time.perf_counter() - start)
        assert result.stdout.startswith("genview ")
    assert min(timings) < 0.8, timings


BLOCK_HEAVY = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
sys.meta_path.insert(0, NotInstalled())
sys.argv = ["genview", *{argv!r}]
from genview.cli.main import main
raise SystemExit(main())
"""


def test_client_verbs_work_without_torch_installed():
    # As if torch, ray, diffusers and transformers were not installed: the client verbs still parse
    # their arguments, build the job spec and reach the network (here: nothing listens on port 9).
    blocked = {"torch", "torchvision", "ray", "diffusers", "transformers", "webdataset"}
    for argv in (["jobs", "--server", "http://127.0.0.1:9"],
                 ["status", "job-1", "--server", "http://127.0.0.1:9"],
                 ["submit", "--server", "http://127.0.0.1:9", "imgs", "--model", "icgan", "--k", "2"]):
        code = BLOCK_HEAVY.format(blocked=blocked, argv=argv)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr[-2000:]
        assert f"genview {argv[0]}: error:" in result.stderr and "Traceback" not in result.stderr


def all_parsers(parser):
    """Yield (name, parser) for every verb and sub-verb."""
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            yield name, sub
            yield from all_parsers(sub)


def test_every_default_is_stated_once():
    # Flags never print "(default: False/True)"; an option whose text states its default gets no second one.
    helps = {}
    for name, parser in all_parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help:
                helps[f"{name} {'/'.join(action.option_strings) or action.dest}"] = formatter._expand_help(action)
    assert len(helps) > 100
    for option, text in helps.items():
        assert text.lower().count("default") <= 1, (option, text)
        assert not any(f"(default: {v})" in text for v in ("None", "True", "False", "[]")), (option, text)
    assert helps["pull --no-verify"] == "copy without checking shards"
    assert helps["generate --shard-size"].endswith("(default: 1000)")
    assert helps["generate --truncation"].count("default") == 1


def test_a_model_verb_without_torch_says_what_is_missing():
    code = BLOCK_HEAVY.format(blocked={"torch"}, argv=["models", "init", "icgan", "--out", "/nonexistent/w"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "genview models: error: No module named 'torch'" in result.stderr and "dependencies" in result.stderr
