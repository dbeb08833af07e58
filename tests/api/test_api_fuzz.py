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
