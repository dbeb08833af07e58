"""`--workers N` without an address: a local Ray instance with N worker processes, here reading and
writing object storage (a real S3 server on 127.0.0.1)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile

import fsspec
from local_cluster import env_for_cli

from genview.datastore.verify import verify_store
from genview.pipeline.runner import RAY_ADDRESS_ENV


def members(data: bytes) -> dict[str, bytes]:
    """Tar member name -> bytes, leaving out the per-sample json (it names the source's URI)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if not m.name.endswith(".json")}


def test_local_ray_workers_on_s3_make_the_in_process_views(fault_job, clean_store, s3_bucket):
    args, spec, _ = fault_job
    s3 = fsspec.filesystem("s3", skip_instance_cache=True)
    s3.put(spec["source"], f"{s3_bucket}/src", recursive=True)
    source, out = f"s3://{s3_bucket}/src", f"s3://{s3_bucket}/store"
    env = env_for_cli()  # carries AWS_ENDPOINT_URL and the test credentials to the driver and its workers
    env.pop(RAY_ADDRESS_ENV, None)
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "genview.cli.main", "generate", source, *args[1:], "--out", out, "--workers", "2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "20 sources -> 60 views, 1 failed" in done.stdout
    report = verify_store(out, decode=True)
    assert report.ok, str(report)
    assert sorted(p.rsplit("/", 1)[1] for p in s3.ls(f"{s3_bucket}/store/shards")) == [f"{i:06d}.tar" for i in range(7)]
    for tar in sorted((clean_store / "shards").glob("*.tar")):
        made = members(s3.cat_file(f"{s3_bucket}/store/shards/{tar.name}"))
        assert made == members(tar.read_bytes()), f"{tar.name}: views differ from the in-process run"
