"""An outside generator (tests/plugins/genview_toy_plugin) through the job service: refused unless the
operator enables it, then run, resumed and verified like a built-in model."""

from __future__ import annotations

import pytest

from genview.datastore.verify import verify_store

from .conftest import TOKENS, LiveServer, wait_for


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory, tiny_weights):
    """A service whose operator enabled icgan and the toy plugin (nothing else)."""
    from genview.synthetic_data import make_image_folder

    base = tmp_path_factory.mktemp("toy-service")
    make_image_folder(base / "imgs", classes=2, per_class=3, size=32, seed=4)
    weights = tiny_weights("toy")
    settings = base / "genview.toml"
    settings.write_text(f"""
model_roots = ["{weights}"]
enabled_models = ["icgan", "toy"]
reconcile_interval = 0.3
progress_cache_seconds = 0.1

[tokens."{TOKENS['alice']}"]
name = "alice"
""")
    live = LiveServer(base, settings, f"sqlite:///{base / 'jobs.sqlite'}", "toy").start()
    yield live, base, weights
    live.stop()


def _body(weights, **overrides):
    body = {"source": "imgs", "model": "toy", "weights": weights, "k": 2, "shard_size": 4, "io_threads": 1,
            "device": "cpu", "params": {"sigma": 0.3}}
    body.update(overrides)
    return body


def test_a_plugin_is_refused_where_it_is_not_enabled(alice, tiny_weights):
    response = alice.post("/v1/jobs", json=_body(tiny_weights("toy"), out="stores/never"))
    assert response.status_code == 422, response.text
    message = " | ".join(err["msg"] for err in response.json()["detail"])
    assert "model 'toy' is not enabled on this service; enabled models: cc-icgan, eldm, icgan" in message
    assert "toy" not in {m["name"] for m in alice.get("/v1/models").json()["models"]}


def test_an_enabled_plugin_runs_resumes_and_verifies(toy_server):
    live, base, weights = toy_server
    with live.client("alice") as client:
        assert sorted(m["name"] for m in client.get("/v1/models").json()["models"]) == ["icgan", "toy"]
        sigma = {p["name"]: p for p in next(m for m in client.get("/v1/models").json()["models"] if m["name"] == "toy")["params"]}["sigma"]
        assert (sigma["type"], sigma["default"], sigma["maximum"]) == ("float", 0.5, 10.0)
        # The plugin's own declaration types its params here too.
        bad = client.post("/v1/jobs", json=_body(weights, out="stores/never", params={"sigma": "0.3"}))
        assert bad.status_code == 422 and "params.sigma: expected a number (float) in [0, 10], got '0.3'" in bad.text
        # A built-in that is not enabled here is refused like any other name.
        off = client.post("/v1/jobs", json=_body(weights, out="stores/never", model="unclip", params={}))
        assert off.status_code == 422 and "enabled models: icgan, toy" in off.text

        made = client.post("/v1/jobs", json=_body(weights, out="stores/toy"))
        assert made.status_code == 201, made.text
        job = wait_for(client, made.json()["id"])
        assert job["state"] == "succeeded", client.get(f"/v1/jobs/{job['id']}/logs").text
        store = base / "stores" / "toy"
        assert verify_store(str(store), decode=True).ok
        assert job["progress"]["views_written"] == 12

        # Resume: lose a shard, submit the same spec again (a new job): only that shard is made.
        (store / "stats" / "000001.json").unlink()
        again = client.post("/v1/jobs", json=_body(weights, out="stores/toy", id="toy-resume"))
        assert again.status_code == 201, again.text
        job = wait_for(client, "toy-resume")
        assert job["state"] == "succeeded", client.get("/v1/jobs/toy-resume/logs").text
        assert "1 run now" in client.get("/v1/jobs/toy-resume/logs").text
        assert verify_store(str(store), decode=True).ok
