"""Issue 11, the job service as an attacker sees it: paths in params, machine-sized settings, bodies
the encoder chokes on, what error messages reveal, /metrics and other tokens' job ids."""

from __future__ import annotations

import json
import os

import pytest

from genview.pipeline.spec import default_io_threads

from .conftest import wait_for
from .test_api_server import job_body


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory):
    """A file outside every root whose first bytes must never reach a client."""
    path = tmp_path_factory.mktemp("secret") / "secret.bin"
    path.write_bytes(b"TOPSECRET-0123456789\n" * 4)
    return path


def _cancel(client, *ids):
    for job_id in ids:
        client.post(f"/v1/jobs/{job_id}/cancel")


# -- 1. every path in a spec is checked before the job is accepted ---------------------------------

def test_a_path_param_outside_the_roots_is_refused_before_the_job_exists(alice, api_base, secret_file):
    before = alice.get("/v1/jobs").json()["total"]
    response = alice.post("/v1/jobs", json=job_body(api_base, out="stores/never",
                                                    params={"encoder_weights": str(secret_file)}))
    assert response.status_code == 403, response.text
    detail = response.json()["detail"]
    assert detail.startswith("params.encoder_weights: ") and "outside your source or model roots" in detail
    assert "TOPSECRET" not in response.text
    assert alice.get("/v1/jobs").json()["total"] == before  # no job was made, so no worker ever opened it


@pytest.mark.parametrize(
    "change, fragment",
    [
        # A param that names a path is only accepted where the model declares one.
        ({"params": {"checkpoint": "/etc/passwd"}}, "params.checkpoint: unknown icgan param"),
        ({"model": "eldm", "params": {"encoder_weights": "x"}}, "params.encoder_weights: unknown eldm param"),
        ({"params": {"encoder_weights": ["/etc/passwd"]}}, "params.encoder_weights: expected a path (string)"),
        ({"params": {"encoder_weights": 7}}, "params.encoder_weights: expected a path"),
        ({"params": {"truncation": {"path": "/etc/passwd"}}}, "params.truncation: expected a number (float)"),
    ],
)
def test_params_the_model_does_not_declare_are_refused(alice, api_base, change, fragment):
    response = alice.post("/v1/jobs", json={**job_body(api_base, out="stores/never"), **change})
    assert response.status_code == 422, response.text
    assert any(fragment in err["msg"] for err in response.json()["detail"]), response.text


def test_encoder_weights_only_where_the_model_takes_them(alice, api_base):
    weights = api_base["weights"]
    body = job_body(api_base, out="stores/never", model="eldm", encoder_weights=weights)
    response = alice.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "encoder_weights"]
    twice = job_body(api_base, out="stores/never", encoder_weights=weights, params={"encoder_weights": weights})
    response = alice.post("/v1/jobs", json=twice)
    assert response.status_code == 422 and "give it once" in response.text


def test_a_path_param_inside_the_roots_is_resolved_and_used(alice, api_base):
    """The tiny model's own encoder file, named relative to the service folder via a model root."""
    encoder = os.path.join(api_base["weights"], "swav_800ep_pretrain.pth.tar")
    body = job_body(api_base, out="stores/encoder-param", params={"encoder_weights": encoder})
    body.pop("io_threads")
    response = alice.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    spec = response.json()["spec"]
    assert spec["params"]["encoder_weights"] == os.path.realpath(encoder)
    # Resources the request did not name are the operator's defaults.
    assert (spec["io_threads"], spec["batch_size"], spec["workers"]) == (default_io_threads(), 32, None)
    job = wait_for(alice, response.json()["id"])
    assert job["state"] == "succeeded", job


def test_the_worker_refuses_an_unchecked_path_without_opening_it(tmp_path, api_base, secret_file):
    """Defence in depth: a spec that reaches the worker unchecked (e.g. an edited record) is refused."""
    from genview.api.paths import canonical_root
    from genview.api.worker import EXIT_REFUSED, run
    from genview.pipeline.spec import GenerateSpec

    base = str(api_base["base"])
    spec = GenerateSpec(source=os.path.join(base, "imgs"), out=str(tmp_path / "store"), model="icgan",
                        weights=api_base["weights"], params={"encoder_weights": str(secret_file)})
    status = tmp_path / "exit.json"
    roots = [canonical_root(base, base), canonical_root(api_base["weights"], base)]
    before = os.stat(secret_file).st_atime_ns
    code = run(spec, roots[:1], base, str(status), [], weight_roots=roots)
    assert code == EXIT_REFUSED
    recorded = json.loads(status.read_text())
    assert recorded["error"].startswith("params.encoder_weights: ") and "TOPSECRET" not in recorded["error"]
    assert not (tmp_path / "store").exists()
    assert os.stat(secret_file).st_atime_ns == before


# -- 2. clients do not size the machine ----------------------------------------------------------

@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("workers", 6, "does not take workers from requests"),
        ("workers", 4096, "does not take workers from requests"),
        ("io_threads", 9, "at most 8"),
        ("threads", 64, "at most 2"),
        ("batch_size", 4096, "at most 256"),
    ],
)
def test_resource_settings_above_the_operators_cap_get_422(alice, api_base, field, value, fragment):
    response = alice.post("/v1/jobs", json=job_body(api_base, out="stores/never", **{field: value}))
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(err["loc"] == ["body", field] and fragment in err["msg"] for err in errors), errors


def test_caps_and_defaults_are_operator_settings(tmp_path, monkeypatch):
    from genview.api.settings import load_settings

    for name in list(os.environ):
        if name.startswith("GENVIEW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GENVIEW_MAX_WORKERS", "2")
    monkeypatch.setenv("GENVIEW_DEFAULT_BATCH_SIZE", "16")
    settings = load_settings(base_dir=str(tmp_path))
    assert (settings.max_workers, settings.default_batch_size, settings.max_batch_size) == (2, 16, 256)
    monkeypatch.setenv("GENVIEW_MAX_IO_THREADS", "0")
    with pytest.raises(ValueError, match="max_io_threads"):
        load_settings(base_dir=str(tmp_path))


# -- 3. no body makes the service fail --------------------------------------------------------------

def _raw(api_base, **raw_fields) -> str:
    """A job body with some fields given as raw JSON text (NaN, Infinity, 1e400 are not json.dumps-able)."""
    text = json.dumps(job_body(api_base, out="stores/never"))[:-1]
    return text + "".join(f', "{name}": {value}' for name, value in raw_fields.items()) + "}"


def _deep(depth: int, leaf: str = "1") -> str:
    return '{"a": ' * depth + leaf + "}" * depth


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"k": "1e400"}, "k"),
        ({"k": "-Infinity"}, "k"),
        ({"seed": "NaN"}, "seed"),
        ({"alphas": "[NaN]", "interpolate": "true"}, "alphas"),
        ({"quality": "Infinity"}, "quality"),
        ({"params": '{"truncation": NaN}'}, "params.truncation"),
        ({"params": '{"truncation": -Infinity}'}, "params.truncation"),
        ({"params": _deep(500)}, "params.a"),
        ({"params": '{"truncation": ' + _deep(30) + "}"}, "params.truncation"),
        ({"model": '"\\ud800"'}, "model"),
        ({"params": '{"\\udfff": 1}'}, "params"),
        ({"source": '"imgs\\ud800"'}, "source"),
    ],
)
def test_malformed_bodies_get_422_naming_the_field(alice, api_base, raw, field):
    response = alice.post("/v1/jobs", content=_raw(api_base, **raw), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    named = [err for err in errors if field in ".".join(str(p) for p in err["loc"][1:]) or err["msg"].find(field) >= 0]
    assert named, errors


def test_json_nested_deeper_than_the_parser_allows_is_a_400(alice, api_base):
    response = alice.post("/v1/jobs", content=_raw(api_base, params="[" * 5000 + "]" * 5000),
                          headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text


# -- 4. errors describe the request, not the host ---------------------------------------------------

def test_403_messages_do_not_describe_the_host(alice, api_base, tmp_path_factory):
    base = str(api_base["base"])
    outside = tmp_path_factory.mktemp("elsewhere")
    (outside / "imgs").mkdir()
    os.symlink(outside / "imgs", api_base["base"] / "link-to-elsewhere")
    cases = [("source", "/etc"), ("source", "link-to-elsewhere"), ("out", "/tmp"), ("weights", "/usr"),
             ("out", ".genview-jobs/x")]
    for field, value in cases:
        response = alice.post("/v1/jobs", json={**job_body(api_base, out="stores/never"), field: value})
        assert response.status_code == 403, response.text
        detail = response.json()["detail"]
        assert detail.startswith(f"{field}: ") and repr(value) in detail
        for host_path in (base, str(outside), api_base["weights"]):
            assert host_path not in detail, detail


def test_metrics_need_a_token_by_default(server, alice):
    with server.client(None) as anonymous:
        response = anonymous.get("/metrics")
        assert response.status_code == 401 and "genview_jobs" not in response.text
    assert alice.get("/metrics").status_code == 200


def test_healthz_does_not_quote_the_database_error(tmp_path):
    """An unreachable database answers 503 without its URL (it may carry a host and a password)."""
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from genview.api.app import create_app
    from genview.api.settings import Settings

    settings = Settings(base_dir=str(tmp_path), tokens={"t" * 24: {}}, database_url=f"sqlite:///{tmp_path}/jobs.sqlite",
                        reconcile_interval=60)
    unreachable = create_engine("postgresql+psycopg://genview:s3cret@127.0.0.1:1/genview",
                                connect_args={"connect_timeout": 2})
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        ctx = client.app.state.ctx
        working, ctx.sessions = ctx.sessions, sessionmaker(unreachable)
        try:
            response = client.get("/healthz")
        finally:
            ctx.sessions = working
    assert response.status_code == 503
    assert response.json()["detail"] == "database unreachable"
    assert "127.0.0.1" not in response.text and "s3cret" not in response.text


def test_another_tokens_job_id_is_not_revealed(server, api_base):
    """Job ids are per token: bob can use an id alice uses, and learns nothing about hers."""
    with server.client("alice") as alice, server.client("bob") as bob:
        mine = alice.post("/v1/jobs", json={**job_body(api_base, out="stores/ids-alice"), "id": "shared-name"})
        assert mine.status_code in (200, 201), mine.text
        try:
            missing = bob.get("/v1/jobs/never-made").json()
            hers = bob.get("/v1/jobs/shared-name")
            assert hers.status_code == 404
            assert hers.json()["detail"].replace("shared-name", "X") == missing["detail"].replace("never-made", "X")
            theirs = bob.post("/v1/jobs", json={**job_body(api_base, out="stores/ids-bob"), "id": "shared-name"})
            assert theirs.status_code == 201, theirs.text  # not 409 "taken": the id exists only for alice
            assert theirs.json()["id"] == "shared-name" and theirs.json()["owner"] == "bob"
            assert bob.get("/v1/jobs/shared-name").json()["spec"]["out"].endswith("ids-bob")
            assert alice.get("/v1/jobs/shared-name").json()["spec"]["out"].endswith("ids-alice")
        finally:
            _cancel(bob, "shared-name")
            _cancel(alice, "shared-name")


def test_the_declared_params_match_what_the_generators_accept():
    """The torch-free declarations are the truth the generator classes must agree with (names and defaults)."""
    import dataclasses
    import inspect

    from genview.generator.eldm import ELDMGenerator
    from genview.generator.icgan import CCICGANGenerator, ICGANGenerator
    from genview.generator.registry import get_generator_class, model_names, model_params, path_params
    from genview.generator.unclip import UnCLIPGenerator, UnCLIPSettings

    for cls in (ICGANGenerator, CCICGANGenerator):
        assert get_generator_class(cls.model_name) is cls and cls.declaration.name == cls.model_name
        assert "encoder_weights" in inspect.signature(cls.from_pretrained).parameters
        assert set(inspect.signature(cls.__init__).parameters) >= set(model_params(cls.model_name)) - {"encoder_weights"}
        assert path_params(cls.model_name) == ["encoder_weights"]
        assert cls.declaration.params.get("truncation").default == cls.default_truncation
    assert get_generator_class("unclip") is UnCLIPGenerator
    assert {f.name: f.default for f in dataclasses.fields(UnCLIPSettings)} == UnCLIPGenerator.declaration.params.defaults()
    assert ELDMGenerator._PARAM_DEFAULTS == ELDMGenerator.declaration.params.defaults()
    assert path_params("unclip") == path_params("eldm") == []
    assert all(model_params(name) for name in model_names())
