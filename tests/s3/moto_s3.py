"""Fixtures: a real S3 server (moto's server mode) on 127.0.0.1 for the session; clients reach it over HTTP."""

from __future__ import annotations

import logging
import os
import re

import pytest
from live_process import free_port

#: Credentials and endpoint every S3 client in this process (and its child processes) picks up from the
#: environment: botocore honours AWS_ENDPOINT_URL, so s3fs needs no extra storage options.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server():
    """Start moto's S3 server on a free port; point AWS_ENDPOINT_URL at it; yield the endpoint URL."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {name: os.environ.get(name) for name in [*S3_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(S3_ENV, AWS_ENDPOINT_URL=endpoint)
    try:
        yield endpoint
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture()
def s3_bucket(s3_server, request):
    """A fresh, empty bucket per test; returns its name."""
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    name = "gv-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    fs.mkdir(name)
    fs.invalidate_cache()
    return name
