"""Property-based fuzzing of the OpenAPI schema (schemathesis) against the live server: no 5xx, ever."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

schemathesis = pytest.importorskip("schemathesis")

from .conftest import TOKENS  # noqa: E402

#: Examples per operation and generation mode: bounded so the whole fuzz run stays around a minute.
MAX_EXAMPLES = 40


def test_no_generated_request_makes_the_server_fail(server):
    """Every operation, valid (positive) and invalid (negative) inputs, with the fuzz token.

    The fuzz token's roots hold nothing, so no generated job can ever start a worker.
    """
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    auth = {"Authorization": f"Bearer {TOKENS['fuzz']}"}
    failures: list[str] = []
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call(headers=auth, timeout=30)
                calls[operation.label] = calls.get(operation.label, 0) + 1
                if response.status_code >= 500:
                    failures.append(f"{operation.label} -> {response.status_code}: {case.as_curl_command()}\n"
                                    f"{response.text[:500]}")

            try:
                check()
            except Unsatisfiable:
                # An operation without parameters or body has no invalid input to generate.
                assert mode == GenerationMode.NEGATIVE, operation.label
    print({label: count for label, count in sorted(calls.items())})
    assert len(calls) >= 8, calls  # every operation was exercised
    assert not failures, "\n\n".join(failures[:5])


# -- bodies no OpenAPI-driven generator makes: NaN / Infinity / huge numbers, deep nesting, lone surrogates --

def _nested(depth: int, leaf):
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def _json_values():
    from hypothesis import strategies as st

    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -0.0]),
        st.text(max_size=12),
        st.sampled_from(["\ud800", "imgs\udfff", "../..", "/etc/passwd", "s3://x/..", ""]),
    )
    values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                          max_leaves=12)
    deep = st.tuples(st.integers(min_value=1, max_value=700), leaves).map(lambda args: _nested(*args))
    return st.one_of(values, deep)


def test_non_finite_numbers_and_deep_nesting_never_make_the_server_fail(server, api_base):
    """Every field of a job body (and every declared param) gets hostile JSON; nothing may answer 5xx."""
    import json

    import httpx
    from hypothesis import strategies as st

    from genview.api.schemas import JobCreate
    from genview.generator.registry import model_params

    fields = sorted(set(JobCreate.model_fields) | {f"params.{name}" for name in model_params("icgan")} | {"params.x"})
    base = {"source": "fuzz", "model": "icgan", "weights": api_base["weights"], "out": "fuzz/out/hostile",
            "k": 1, "view_size": 16, "device": "cpu"}
    statuses: dict[int, int] = {}
    failures: list[str] = []

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKENS['fuzz']}"}, timeout=30) as client:

        @given(changes=st.dictionaries(st.sampled_from(fields), _json_values(), min_size=1, max_size=3))
        @settings(max_examples=150, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(changes):
            body = dict(base)
            for name, value in changes.items():
                if name.startswith("params."):
                    params = body.get("params") if isinstance(body.get("params"), dict) else {}
                    body["params"] = {**params, name.split(".", 1)[1]: value}
                else:
                    body[name] = value
            try:
                text = json.dumps(body)  # NaN / Infinity written as Python's json does (the bodies)
            except RecursionError:
                return
            response = client.post("/v1/jobs", content=text, headers={"content-type": "application/json"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{response.status_code} for {text[:300]}: {response.text[:300]}")
            else:
                response.json()  # every answer is valid JSON
            if response.status_code in (200, 201):
                client.post(f"/v1/jobs/{response.json()['id']}/cancel")

        check()
    print(statuses)
    assert not failures, "\n".join(failures[:5])
    assert statuses.get(422, 0) > 50, statuses
