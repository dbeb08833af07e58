"""A real genview service under uvicorn on 127.0.0.1, driven over HTTP by the API tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from live_process import ServerProcess, free_port

TOKENS = {
    "alice": "alice-token-0123456789abcdef",
    "bob": "bob-token-0123456789abcdef",
    "fuzz": "fuzz-token-0123456789abcdef",
    "ops": "ops-token-0123456789abcdef",  # an admin token: /metrics shows it every owner
}
TERMINAL = ("succeeded", "failed", "cancelled")


class LiveServer(ServerProcess):
    """`genview serve` in a subprocess with a settings file and a job database."""

    def __init__(self, base: Path, settings_file: Path, database: str, name: str, env: dict[str, str] | None = None):
        self.base, self.settings_file, self.database, self.name = base, settings_file, database, name
        self.log_path = base / f"server-{name}.log"
        super().__init__(["serve", "--host", "127.0.0.1", "--port", "{port}", "--settings", str(settings_file),
                          "--log-level", "warning"], cwd=base, log=self.log_path,
                         env={"GENVIEW_DATABASE_URL": database, **(env or {})})

    def start(self, timeout: float = 90.0) -> "LiveServer":
        """Start the service and wait for /healthz."""
        super().start("/healthz", timeout)
        return self

    def client(self, who: str | None = "alice") -> httpx.Client:
        """An httpx client with `who`'s bearer token (None: no token)."""
        headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def wait_for(client: httpx.Client, job_id: str, until=lambda job: job["state"] in TERMINAL, timeout: float = 180.0,
             poll: float = 0.2) -> dict:
    """Poll GET /v1/jobs/ID until `until(job)` holds; fail with the job's log on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            logs = client.get(f"/v1/jobs/{job_id}/logs").text
            raise AssertionError(f"job {job_id} stuck: {job}\n--- log ---\n{logs}")
        time.sleep(poll)


@pytest.fixture(scope="session")
def api_base(tmp_path_factory, tiny_weights):
    """The service folder: images, a settings file with three tokens, and tiny random IC-GAN weights."""
    from genview.synthetic_data import make_image_folder

    base = tmp_path_factory.mktemp("service")
    make_image_folder(base / "imgs", classes=3, per_class=4, size=48, seed=1)
    make_image_folder(base / "big", classes=4, per_class=10, size=48, seed=2)
    (base / "fuzz" / "out").mkdir(parents=True)
    weights = tiny_weights("icgan")
    settings = base / "genview.toml"
    settings.write_text(f"""
model_roots = ["{weights}"]
max_running_jobs = 1
reconcile_interval = 0.3
progress_cache_seconds = 0.1
cancel_grace_seconds = 5
max_body_bytes = 16384

[tokens."{TOKENS['alice']}"]
name = "alice"
output_roots = [".", "s3://alice-bucket/stores"]
max_jobs_in_flight = 3

[tokens."{TOKENS['bob']}"]
name = "bob"
max_jobs_in_flight = 1

[tokens."{TOKENS['fuzz']}"]
name = "fuzz"
source_roots = ["fuzz"]
output_roots = ["fuzz/out"]
max_jobs_in_flight = 1

[tokens."{TOKENS['ops']}"]
name = "ops"
admin = true
max_jobs_in_flight = 1
""")
    return {"base": base, "settings": settings, "weights": weights}


@pytest.fixture(scope="session")
def server(api_base):
    """The shared live server (SQLite file in the service folder)."""
    base = api_base["base"]
    live = LiveServer(base, api_base["settings"], f"sqlite:///{base / 'jobs.sqlite'}", "main").start()
    yield live
    live.stop()


@pytest.fixture()
def alice(server):
    with server.client("alice") as client:
        yield client


# -- a real PostgreSQL server, started for the tests ----------------------------------------------------

def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server binaries (Debian's versioned one first), None when absent."""
    for version in ("15", "16", "17", "14"):
        folder = Path(f"/usr/lib/postgresql/{version}/bin")
        if (folder / "pg_ctl").exists() and (folder / "initdb").exists():
            return folder
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


class PostgresServer:
    """initdb + pg_ctl into a temp folder, listening on 127.0.0.1 only; as the postgres user when we are root."""

    def __init__(self, folder: Path, bin_dir: Path):
        self.folder = folder
        self.bin = bin_dir
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"postgresql://genview@127.0.0.1:{self.port}/genview"

    def _run(self, *argv: str) -> None:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:  # initdb refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)

    def start(self) -> "PostgresServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "genview", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.resume()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "genview", "genview")
        return self

    def resume(self) -> None:
        """Start the (initialised) server again on the same port: a database outage ends."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut, as in an outage)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def fresh_database(self, name: str) -> str:
        """Create an empty database; return its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "genview", name)
        return f"postgresql://genview@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for this test session (skipped only when no PostgreSQL binaries exist:
    .ci/install-postgres.sh installs them)."""
    import tempfile

    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (run .ci/install-postgres.sh)")
    # Not under pytest's tmp dir: that is private to root, and the server runs as the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="genview-pg-"))
    server = PostgresServer(folder, bin_dir)
    try:
        server.start()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
