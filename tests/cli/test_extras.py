"""Each "this command needs X" error names the pip extra to install (the package really missing, in a subprocess)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from genview.extras import EXTRA_OF_MODULE
from missing_modules import run_genview_without

REPO = Path(__file__).resolve().parents[2]


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]


def test_every_extra_package_is_mapped_to_its_extra():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"api", "postgres", "ray", "s3", "quality", "docs", "all", "test"} <= set(extras)
    modules_of: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    for extra in ("api", "postgres", "ray", "s3", "quality", "docs"):
        for requirement in extras[extra]:
            dist = _requirement_name(requirement).lower().replace("_", "-")
            mapped = {module: EXTRA_OF_MODULE[module] for module in modules_of.get(dist, ()) if module in EXTRA_OF_MODULE}
            assert mapped, f"{requirement} ([{extra}]) is installed as none of the modules genview.extras maps"
            assert set(mapped.values()) == {extra}, (requirement, mapped)
    # [all] is every feature extra; [test] installs [all] (the tests cover every feature).
    assert extras["all"] == ["genview[api,postgres,ray,s3,quality]"]
    assert "genview[all]" in extras["test"]


@pytest.fixture(scope="module")
def one_image_folder(tmp_path_factory):
    from genview.synthetic_data import make_image_folder

    root = tmp_path_factory.mktemp("extras-src")
    make_image_folder(root, classes=1, per_class=1, size=32, seed=0)
    return root


CASES = {
    # name: (packages made missing, argv, extra the error must name)
    "browse": ({"uvicorn"}, ["browse", "some-store"], "api"),
    "serve": ({"uvicorn"}, ["serve", "--no-auth", "--port", "9"], "api"),
    "jobs": ({"httpx"}, ["jobs", "--server", "http://127.0.0.1:9"], "api"),
    "submit": ({"httpx"}, ["submit", "--server", "http://127.0.0.1:9", "imgs", "--model", "icgan"], "api"),
    "inspect-s3": ({"s3fs"}, ["inspect", "s3://bucket/store"], "s3"),
    "generate-workers": ({"ray"}, ["generate", "{src}", "--model", "icgan", "--weights", "w", "--workers", "2",
                                    "--out", "{tmp}/store"], "ray"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_missing_extra_is_named_in_the_error(case, one_image_folder, tmp_path):
    blocked, argv, extra = CASES[case]
    argv = [arg.format(src=one_image_folder, tmp=tmp_path) for arg in argv]
    result = run_genview_without(blocked, argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"pip install 'genview[{extra}]'" in result.stderr, result.stderr
    assert "model dependencies" not in result.stderr
    assert result.stderr.startswith(f"genview {argv[0]}: error: "), result.stderr


def test_a_missing_base_package_names_the_base_install(tmp_path):
    result = run_genview_without({"torch"}, ["models", "init", "icgan", "--out", str(tmp_path / "w")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "No module named 'torch'" in result.stderr and "model dependencies" in result.stderr
    assert "genview[" not in result.stderr  # no extra installs torch: the base install does
