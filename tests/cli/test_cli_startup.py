"""The CLI answers at once: --help, --version and the service client verbs import no model stack."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pytest

from genview.cli.main import build_parser
from missing_modules import run_genview_without

HEAVY = ("torch", "torchvision", "ray", "diffusers", "transformers", "webdataset", "pandas", "pyarrow")
CLIENT_VERBS = ("submit", "jobs", "status", "logs", "cancel")


def imported_modules(*argv: str, cwd=None) -> tuple[set[str], subprocess.CompletedProcess]:
    """Run `python -X importtime -m genview.cli.main ARGV` and return the top-level packages it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "genview.cli.main", *argv],
                            capture_output=True, text=True, timeout=60, cwd=cwd)
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




def test_client_verbs_work_without_torch_installed():
    # As if torch, ray, diffusers and transformers were not installed: the client verbs still parse
    # their arguments, build the job spec and reach the network (here: nothing listens on port 9).
    blocked = {"torch", "torchvision", "ray", "diffusers", "transformers", "webdataset"}
    for argv in (["jobs", "--server", "http://127.0.0.1:9"],
                 ["status", "job-1", "--server", "http://127.0.0.1:9"],
                 ["submit", "--server", "http://127.0.0.1:9", "imgs", "--model", "icgan", "--k", "2"]):
        result = run_genview_without(blocked, argv, timeout=60)
        assert result.returncode == 1, result.stderr[-2000:]
        assert f"genview {argv[0]}: error:" in result.stderr and "Traceback" not in result.stderr


def best_wall_time(argv: list[str], cwd, runs: int = 3) -> tuple[float, subprocess.CompletedProcess]:
    """Best of `runs` wall times of `python -m genview.cli.main ARGV` (the machine is shared), and the last result."""
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "genview.cli.main", *argv], capture_output=True, text=True,
                                timeout=60, cwd=cwd)
        timings.append(time.perf_counter() - start)
    return min(timings), result


#: `genview generate` flag errors: argv, and what stderr must say. Run in a folder holding imagenet/ (empty)
#: and images.json; none of them may import torch.
FLAG_ERRORS = {
    "no-weights": (["imagenet/", "--model", "icgan", "--k", "10"], ["--weights is required for --model icgan"]),
    "no-source": (["missing/", "--model", "icgan", "--k", "10", "--weights", "w"], ["source 'missing/' does not exist"]),
    "not-a-list-file": (["images.json", "--model", "icgan", "--weights", "w"], ["neither a folder nor a list file"]),
    "unknown-param": (["imagenet/", "--model", "icgan", "--weights", "w", "--param", "trunc=0.5"],
                      ["--param trunc: unknown icgan param; known: ", "truncation"]),
    "all-at-once": (["missing/", "--model", "unclip"], ["--weights is required", "source 'missing/' does not exist"]),
}


@pytest.fixture()
def generate_cwd(tmp_path):
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "images.json").write_text("[]")
    return tmp_path


@pytest.mark.parametrize("case", list(FLAG_ERRORS))
def test_generate_flag_errors_answer_before_torch(case, generate_cwd):
    argv, expected = FLAG_ERRORS[case]
    names, result = imported_modules("generate", *argv, cwd=generate_cwd)
    assert result.returncode == 2, result.stderr[-2000:]
    stderr = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("import time:"))
    for text in expected:
        assert text in stderr, stderr
    assert "Traceback" not in stderr and stderr.startswith("genview generate: error: "), stderr
    assert "genview" in names and sorted(set(HEAVY) & names) == [], stderr


def test_generate_without_weights_exits_2_in_under_a_second(generate_cwd):
    # The command: 15-27 s before (torch was imported before the flags were checked).
    seconds, result = best_wall_time(["generate", "imagenet/", "--model", "icgan", "--k", "10"], generate_cwd)
    assert result.returncode == 2 and "--weights is required" in result.stderr, result.stderr
    assert seconds < 1.0, seconds


def test_generate_checks_the_same_list_suffixes_as_the_lister():
    from genview.cli.generate_checks import LIST_FILE_SUFFIXES
    from genview.datastore.sources import LIST_FILE_SUFFIXES as LISTER_SUFFIXES

    assert LIST_FILE_SUFFIXES == LISTER_SUFFIXES


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
    result = run_genview_without({"torch"}, ["models", "init", "icgan", "--out", "/nonexistent/w"], timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "genview models: error: No module named 'torch'" in result.stderr and "dependencies" in result.stderr


def test_every_option_of_every_verb_has_help():
    missing = [f"{name} {'/'.join(action.option_strings) or action.dest}"
               for name, parser in all_parsers(build_parser()) for action in parser._actions
               if not (action.help or "").strip() and not isinstance(action, argparse._SubParsersAction)]
    assert missing == []
