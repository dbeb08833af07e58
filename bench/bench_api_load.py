"""Load test of the job service: mixed POST /v1/jobs and GET /v1/jobs/{id} from a second process.

    python bench/bench_api_load.py                          # starts its own server on 127.0.0.1 (tiny random IC-GAN)
    python bench/bench_api_load.py --requests 2000 --concurrency 50
    python bench/bench_api_load.py --database-url postgresql://genview@127.0.0.1:5432/genview

The server (when started here) runs one real job while the requests hit it, so each status read
includes the store-progress lookup of a running job. The mix, request i of the run:
  even i          GET  /v1/jobs/{id}          the running job's status (and progress)
  i % 4 == 1      POST /v1/jobs               an identical resubmission (Idempotency-Key replay: 200)
  i % 4 == 3      POST /v1/jobs               a new job (its own key and store: 201, queued)
Prints a table of p50 / p90 / p99 / max latency per kind of request, and the totals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "bench-token-0123456789abcdef"
KINDS = ("GET status", "POST replay", "POST new")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for requests with Content-Length replies.

    A bare asyncio client: httpx's pool costs more CPU per request than the server does, and on a
    small machine the load generator would measure itself instead of the service.
    """

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> int:
        """Send one request, read the whole reply, return its status code (reconnects when closed)."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.writer.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _requests(netloc: str, token: str, job_id: str, spec: dict, run: str):
    """Return a function i -> (kind, request bytes) for the mix described in the module docstring."""
    auth = f"Host: {netloc}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n"
    get = (f"GET /v1/jobs/{job_id} HTTP/1.1\r\n{auth}\r\n").encode()

    def post(body: dict, key: str) -> bytes:
        data = json.dumps(body).encode()
        return (f"POST /v1/jobs HTTP/1.1\r\n{auth}Content-Type: application/json\r\nIdempotency-Key: {key}\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode() + data

    replay = post(spec, "bench-first-job")

    def request(i: int) -> tuple[str, bytes]:
        if i % 2 == 0:
            return KINDS[0], get
        if i % 4 == 1:
            return KINDS[1], replay
        return KINDS[2], post({**spec, "out": f"stores/{run}-{i}"}, f"bench-{run}-{i}")

    return request


async def _load(server: str, token: str, job_id: str, spec: dict, total: int, concurrency: int,
                max_seconds: float) -> dict:
    """Issue `total` mixed requests over `concurrency` keep-alive connections; stop issuing after `max_seconds`."""
    from urllib.parse import urlsplit

    url = urlsplit(server)
    request_for = _requests(url.netloc, token, job_id, spec, f"r{os.getpid()}")
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    statuses: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    counter = iter(range(total))
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker() -> None:
        connection = _Connection(url.hostname, url.port or 80)
        try:
            for i in counter:
                if time.perf_counter() >= deadline:
                    break
                kind, request = request_for(i)
                t0 = time.perf_counter()
                try:
                    key = str(await asyncio.wait_for(connection.send(request), timeout=60))
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    key = type(exc).__name__  # counted, not fatal: the run goes on
                    connection.close()
                    connection = _Connection(url.hostname, url.port or 80)
                latencies[kind].append(time.perf_counter() - t0)
                statuses[kind][key] = statuses[kind].get(key, 0) + 1
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    everything = [value for values in latencies.values() for value in values]
    rows = {}
    for kind, values in [*latencies.items(), ("all", everything)]:
        if not values:
            continue
        rows[kind] = {
            "requests": len(values),
            "p50_ms": round(percentile(values, 50) * 1000, 1),
            "p90_ms": round(percentile(values, 90) * 1000, 1),
            "p99_ms": round(percentile(values, 99) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
            "mean_ms": round(statistics.fmean(values) * 1000, 1),
            "statuses": statuses.get(kind) or _merged(statuses),
        }
    return {
        "requests": len(everything),
        "planned": total,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "req_per_s": round(len(everything) / elapsed, 1),
        "rows": rows,
        "stopped_by_time_limit": len(everything) < total,
    }


def _merged(statuses: dict[str, dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for counts in statuses.values():
        for key, count in counts.items():
            merged[key] = merged.get(key, 0) + count
    return merged


def table(result: dict) -> str:
    """The result as a markdown table, one row per kind of request and one for all."""
    lines = ["| requests | n | p50 ms | p90 ms | p99 ms | max ms | statuses |", "|---|---:|---:|---:|---:|---:|---|"]
    for kind, row in result["rows"].items():
        codes = ", ".join(f"{code}: {count}" for code, count in sorted(row["statuses"].items()))
        lines.append(f"| {kind} | {row['requests']} | {row['p50_ms']} | {row['p90_ms']} | {row['p99_ms']} | "
                     f"{row['max_ms']} | {codes} |")
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(workdir: Path, database_url: str | None, server_env: list[str] = ()) -> tuple[subprocess.Popen, str, str]:
    """Start `genview serve` in workdir with a tiny random IC-GAN and an image folder; return (proc, url, weights)."""
    from genview.cli.models import init_random_model
    from genview.synthetic_data import make_image_folder

    make_image_folder(workdir / "imgs", classes=4, per_class=10, size=48, seed=0)
    init_random_model("icgan", "tiny", str(workdir / "weights"), seed=0)
    # Room for every submitted job to queue: the bench measures the service, not the 429 path.
    (workdir / "genview.toml").write_text(f'[tokens."{TOKEN}"]\nname = "bench"\nmax_jobs_in_flight = 100000\n')
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENVIEW_")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    if database_url:
        env["GENVIEW_DATABASE_URL"] = database_url
    env.update(item.split("=", 1) for item in server_env)
    log = open(workdir / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "genview.cli.main", "serve", "--port", str(port), "--settings",
                             "genview.toml", "--log-level", "warning"], cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError((workdir / "server.log").read_text())
        with contextlib.suppress(httpx.TransportError):  # not listening yet
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url, str(workdir / "weights")
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def _stop_workers(workdir: Path) -> None:
    """Kill the job workers the (stopped) server started: they run in their own sessions and outlive it."""
    import psutil

    for record in workdir.glob(".genview-jobs/*/worker.json"):
        info = json.loads(record.read_text())
        try:
            if abs(psutil.Process(info["pid"]).create_time() - info["start_time"]) < 1.0:
                os.killpg(info["pid"], signal.SIGKILL)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            continue  # the worker is already gone


def main() -> int:
    """Run the benchmark (or, with --load-only, just the load generator: the second process)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests in total (half GET, half POST)")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight at once")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop issuing requests after this long")
    parser.add_argument("--database-url", help="job database of the server started here (default: SQLite)")
    parser.add_argument("--server-env", action="append", default=[], metavar="GENVIEW_NAME=VALUE",
                        help="a setting for the server started here (repeatable), e.g. GENVIEW_HTTP_THREADS=4")
    parser.add_argument("--profile", help="write a py-spy profile of the server (collapsed stacks) to this file")
    parser.add_argument("--profile-seconds", type=float, default=20, help="how long py-spy samples")
    parser.add_argument("--load-only", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load_only:
        job = json.loads(args.load_only)
        result = asyncio.run(_load(job["server"], TOKEN, job["id"], job["spec"], args.requests, args.concurrency,
                                   args.max_seconds))
        print(json.dumps(result))
        return 0

    import httpx

    proc = None
    with tempfile.TemporaryDirectory(prefix="genview-bench-") as tmp:
        headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "bench-first-job"}
        try:
            proc, server, weights = start_server(Path(tmp), args.database_url, args.server_env)
            spec = {"source": "imgs", "model": "icgan", "weights": weights, "k": 4, "shard_size": 2,
                    "best_of": 8, "device": "cpu", "io_threads": 1, "out": "store"}
            response = httpx.post(server + "/v1/jobs", json=spec, headers=headers)
            response.raise_for_status()
            job_id = response.json()["id"]
            # Measure while the worker generates: status reads then include a live store-progress lookup.
            for _ in range(600):
                job = httpx.get(f"{server}/v1/jobs/{job_id}", headers=headers, timeout=60).json()
                if job["progress"]["sources_done"] > 0 or job["state"] not in ("queued", "running"):
                    break
                time.sleep(0.2)
            before = job["state"]
            profiler = None
            if args.profile:
                # Sampling profile of the server process (all threads, idle ones left out) while the load runs.
                pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                profiler = subprocess.Popen([pyspy, "record", "-p", str(proc.pid), "-o", args.profile, "--format", "raw",
                                             "--rate", "200", "--duration", str(int(args.profile_seconds))],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
            # The second process: the load generator shares no interpreter (or GIL) with the server.
            load = subprocess.run(
                [sys.executable, __file__, "--load-only", json.dumps({"server": server, "id": job_id, "spec": spec}),
                 "--requests", str(args.requests), "--concurrency", str(args.concurrency),
                 "--max-seconds", str(args.max_seconds)],
                capture_output=True, text=True, check=True,
            )
            result = json.loads(load.stdout.strip().splitlines()[-1])
            after = httpx.get(f"{server}/v1/jobs/{job_id}", headers=headers, timeout=60).json()
            database = "postgresql" if args.database_url else "sqlite"
            print(f"{result['requests']} requests ({result['planned']} planned) at concurrency {result['concurrency']} "
                  f"in {result['seconds']} s -> {result['req_per_s']} req/s; {database} job records; "
                  f"job {before} -> {after['state']} ({after['progress']['sources_done']}/"
                  f"{after['progress']['sources_total']} sources)")
            print(table(result))
            print(json.dumps(result))
            if profiler is not None:
                profiler.wait(timeout=120)
                print(f"py-spy profile of the server during the load: {args.profile}")
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                _stop_workers(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
