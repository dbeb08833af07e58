"""Issue 19's submit probes against a real service: params typed and bounded from their declaration,
top-level fields strict and bounded, an operator cap on a job's cost, and only enabled models."""

from __future__ import annotations

import pytest

from .test_api_server import job_body


def _messages(response) -> str:
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else " | ".join(err["msg"] for err in detail)


@pytest.mark.parametrize(
    "params, fragment",
    [
        # The bodies: a negative truncation and a boolean one were accepted.
        ({"truncation": -5}, "params.truncation: expected a number (float) in [0, 10], got -5"),
        ({"truncation": True}, "params.truncation: expected a number (float) in [0, 10], got true"),
        # No string-to-number coercion, and a choice is one of its values.
        ({"truncation": "0.5"}, "params.truncation: expected a number (float)"),
        ({"truncation_mode": "sideways"}, "params.truncation_mode: expected one of scaled, truncated"),
        ({"compile": 1}, "params.compile: expected true or false, got 1"),
        ({"compile": "true"}, "params.compile: expected true or false"),
    ],
)
def test_params_are_typed_and_bounded_by_their_declaration(alice, api_base, params, fragment):
    response = alice.post("/v1/jobs", json=job_body(api_base, out="stores/never", params=params))
    assert response.status_code == 422, response.text
    assert fragment in _messages(response), response.text


def test_unclip_int_params_refuse_strings_and_floats(alice, api_base):
    for value, shown in (("3", "'3'"), (3.5, "3.5"), (0, "0"), (1001, "1001")):
        body = job_body(api_base, out="stores/never", model="unclip", params={"num_inference_steps": value})
        response = alice.post("/v1/jobs", json=body)
        assert response.status_code == 422, response.text
        assert f"params.num_inference_steps: expected an integer in [1, 1000], got {shown}" in _messages(response)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"k": "3"}, "k"),  # the body: "3" became 3
        ({"k": True}, "k"),
        ({"seed": 10**40}, "seed"),  # the body: beyond the manifest's int64
        ({"seed": 2**63}, "seed"),
        ({"seed": -1}, "seed"),
        ({"best_of": 65}, "best_of"),
        ({"view_size": 4097}, "view_size"),
        ({"k": 1001}, "k"),
        ({"view_size": "64"}, "view_size"),
    ],
)
def test_top_level_fields_are_strict_and_bounded(alice, api_base, change, field):
    response = alice.post("/v1/jobs", json=job_body(api_base, out="stores/never", **change))
    assert response.status_code == 422, response.text
    assert any(err["loc"][-1] == field for err in response.json()["detail"]), response.text


def test_the_largest_seed_the_manifest_stores_is_accepted(alice, api_base):
    from .conftest import wait_for

    response = alice.post("/v1/jobs", json=job_body(api_base, out="stores/max-seed", seed=2**63 - 1, k=1))
    assert response.status_code == 201, response.text
    job = wait_for(alice, response.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["spec"]["seed"] == 2**63 - 1


@pytest.mark.parametrize(
    "change, cost",
    [
        ({"k": 1000, "view_size": None}, "65,536,000"),  # 1000 x 1 x 256 x 256 (IC-GAN's side)
        ({"k": 10, "best_of": 64, "view_size": None}, "41,943,040"),
        ({"k": 10, "view_size": 4096, "format": "png"}, "167,772,160"),
    ],
)
def test_a_job_above_the_cost_cap_is_refused_with_its_cost_and_the_cap(alice, api_base, change, cost):
    body = {key: value for key, value in {**job_body(api_base, out="stores/never"), **change}.items() if value is not None}
    response = alice.post("/v1/jobs", json=body)
    if cost == "41,943,040":  # under the default cap of 50,000,000: accepted (and cancelled at once)
        assert response.status_code == 201, response.text
        alice.post(f"/v1/jobs/{response.json()['id']}/cancel")
        return
    assert response.status_code == 422, response.text
    message = _messages(response)
    assert f"job cost {cost} views x candidates x pixels per source image" in message
    assert "cap of 50,000,000" in message and "GENVIEW_MAX_COST_PER_SOURCE" in message


def test_a_model_that_is_not_enabled_is_refused_before_it_is_imported(alice, api_base):
    # package.module:Class would import code in the service: refused by name, whatever the module.
    for model in ("os:system", "genview.generator.icgan:ICGANGenerator", "no-such-model"):
        response = alice.post("/v1/jobs", json=job_body(api_base, out="stores/never", model=model))
        assert response.status_code == 422, response.text
        message = _messages(response)
        assert f"model {model!r} is not enabled on this service; enabled models: cc-icgan, eldm, icgan" in message
        assert "toy" not in message  # installed, but not enabled by default


def test_models_lists_the_enabled_models_with_their_declared_params(alice):
    models = {m["name"]: m for m in alice.get("/v1/models").json()["models"]}
    assert {"icgan", "cc-icgan", "unclip", "eldm"} <= set(models)
    truncation = {p["name"]: p for p in models["icgan"]["params"]}["truncation"]
    assert (truncation["type"], truncation["default"], truncation["minimum"], truncation["maximum"]) == ("float", 0.8, 0.0, 10.0)
    steps = {p["name"]: p for p in models["unclip"]["params"]}["num_inference_steps"]
    assert steps["type"] == "int" and steps["default"] == 20
