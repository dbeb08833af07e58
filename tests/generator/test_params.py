"""Typed param declarations and the registry: one declaration for the CLI, the service and `models info`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from genview.generator import GeneratorDeclaration, Param, ParamError, ParamSpec
from genview.generator.registry import get_declaration, model_names, register, unregister


@pytest.mark.parametrize(
    "param, good, bad",
    [
        (Param("t", "float", 0.8, minimum=0.0, maximum=10.0), [0, 0.5, 10], [-5, True, "0.5", float("nan"), 10.5, None]),
        (Param("n", "int", 20, minimum=1, maximum=1000), [1, 1000], [0, 1001, 3.0, "3", True, None]),
        (Param("b", "bool", False), [True, False], [1, 0, "true", None]),
        (Param("c", "choice", "ddim", choices=("ddim", "euler")), ["euler"], ["heun", 1, None]),
        (Param("p", "path", None), ["/w/x.pth", None], ["", 7, ["/etc/passwd"]]),
        (Param("s", "int", None, minimum=8), [None, 8], [7, "8"]),
    ],
)
def test_values_are_checked_strictly(param, good, bad):
    for value in good:
        assert param.check(value) == value
    for value in bad:
        with pytest.raises(ParamError, match=f"^params.{param.name}: expected "):
            param.check(value)


def test_an_int_is_a_float_and_becomes_one():
    value = Param("t", "float", 1.0).check(1)
    assert value == 1.0 and isinstance(value, float)


def test_command_line_text_is_parsed_by_the_declared_type():
    assert Param("n", "int", 1).parse_text("3") == 3
    assert Param("t", "float", 1.0).parse_text("0.25") == 0.25
    assert Param("b", "bool", False).parse_text("true") is True and Param("b", "bool", True).parse_text("no") is False
    assert Param("s", "choice", "a", choices=("a", "b c")).parse_text('"b c"') == "b c"  # the worker's JSON quoting
    assert Param("x", "int", None).parse_text("null") is None
    with pytest.raises(ParamError, match=r"params.n: expected an integer, got '3.5'"):
        Param("n", "int", 1).parse_text("3.5")
    with pytest.raises(ParamError, match="params.b: expected true or false, got 'maybe'"):
        Param("b", "bool", False).parse_text("maybe")


def test_a_declaration_must_be_consistent():
    with pytest.raises(ParamError, match="params.t: expected a number"):
        Param("t", "float", -1.0, minimum=0.0)  # its own default breaks its bounds
    with pytest.raises(ValueError, match="needs its choices"):
        Param("c", "choice", "x")
    with pytest.raises(ValueError, match="declared twice: a"):
        ParamSpec([Param("a", "int", 1), Param("a", "int", 2)])
    with pytest.raises(ValueError, match="declare a `tiny` random preset"):
        GeneratorDeclaration("x", "m:C", presets=("full",))
    with pytest.raises(ValueError, match="package.module:Class"):
        GeneratorDeclaration("x", "no-colon")


def test_spec_checks_params_against_the_declaration():
    from pydantic import ValidationError

    from genview.pipeline.spec import GenerateSpec

    spec = GenerateSpec(source="s", out="o", model="icgan", params={"truncation": 1})
    assert spec.params == {"truncation": 1.0}
    with pytest.raises(ValidationError, match=r"params.truncation: expected a number \(float\) in \[0, 10\], got -5"):
        GenerateSpec(source="s", out="o", model="icgan", params={"truncation": -5})
    with pytest.raises(ValidationError, match="less than or equal to 9223372036854775807"):
        GenerateSpec(source="s", out="o", model="icgan", seed=2**63)


def test_register_and_import_paths(tmp_path):
    declaration = GeneratorDeclaration("scratch", "genview_toy_plugin.model:ToyGenerator")
    register(declaration, source="a notebook")
    try:
        assert "scratch" in model_names() and get_declaration("scratch") is declaration
        with pytest.raises(ValueError, match="already taken"):
            register(GeneratorDeclaration("icgan", "m:C"))
    finally:
        unregister("scratch")
    assert "scratch" not in model_names()
    assert get_declaration("genview.generator.builtin:UNCLIP").name == "unclip"
    with pytest.raises(ValueError, match="is neither a genview.generator.GeneratorDeclaration"):
        get_declaration("genview.generator.params:PARAM_TYPES")
    with pytest.raises(ValueError, match="cannot import it"):
        get_declaration("no_such_package.module:Thing")
    with pytest.raises(ValueError, match="unknown model 'nope'; known models: cc-icgan, eldm, icgan"):
        get_declaration("nope")


def test_models_info_lists_every_param_with_type_and_default():
    done = subprocess.run([sys.executable, "-m", "genview.cli.main", "models", "info", "icgan", "--preset", "tiny"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for line in ("truncation       float   0.8      a number (float) in [0, 10]",
                 "truncation_mode  choice  scaled   one of scaled, truncated",
                 "encoder_weights  path    null     a path (string), or null"):
        assert line in done.stdout, done.stdout
    assert "generator" in done.stdout and "A100:" in done.stdout  # and the FLOPs table after it


def test_generate_refuses_a_mistyped_param_before_loading_anything(tmp_path):
    code = ("import sys; from genview.cli.main import main; rc = main(['generate', 'src', '--model', 'unclip', "
            "'--param', 'num_inference_steps=3.5']); print(rc, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert "--param num_inference_steps: expected an integer in [1, 1000], got '3.5'" in done.stderr


def test_the_service_refuses_to_start_with_an_unknown_enabled_model(tmp_path):
    from genview.api.settings import load_settings

    with pytest.raises(ValueError, match="unknown model 'icgn'"):
        load_settings(base_dir=str(tmp_path), enabled_models="icgan,icgn")
    assert load_settings(base_dir=str(tmp_path), enabled_models="icgan, unclip").enabled_models == ["icgan", "unclip"]


def test_docs_param_tables_match_the_declarations():
    from pathlib import Path

    from genview.generator.params import markdown_params
    from genview.generator.registry import builtin_model_names

    page = (Path(__file__).resolve().parents[2] / "docs" / "generators.md").read_text()
    for name in builtin_model_names():
        assert f"### `{name}`\n\n{markdown_params(get_declaration(name).params)}" in page, name


def test_the_default_cost_cap_admits_every_recipe():
    from genview.api.security import job_cost_per_source
    from genview.api.settings import Settings
    from genview.pipeline.spec import GenerateSpec
    from genview.recipes import recipe_names

    cap = Settings.model_fields["max_cost_per_source"].default
    costs = {name: job_cost_per_source(GenerateSpec(source="s", out="o", recipe=name))[0] for name in recipe_names()}
    assert costs["genssl-unclip"] == 10 * 768 * 768 == 5_898_240  # docs/generators.md quotes it
    assert max(costs.values()) <= cap, costs
