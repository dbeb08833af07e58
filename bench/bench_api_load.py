"""Load test of the job service: a fixed count of concurrent GET /v1/jobs/{id} from a second process.

    python bench/bench_api_load.py                       # starts its own server on 127.0.0.1 (tiny random IC-GAN)
    python bench/bench_api_load.py --server URL --token T --job-id ID
    python bench/bench_api_load.py --requests 2000 --concurrency 200 --max-seconds 120

The server (when started here) runs one real job while the status reads hit it, so each read
includes the store-progress lookup of a running job. Prints p50 / p90 / p99 / max latency and req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "bench-token-0123456789abcdef"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for GET + Content-Length replies.

    A bare asyncio client: httpx's pool costs more CPU per request than the server does, and on a
    small machine the load generator would measure itself instead of the service.
    """

    def __init__(self, host: str, port: int, request: bytes):
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self) -> int:
        """Send the request, read the whole reply, return its status code (reconnects when closed)."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(self.request)
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


async def _load(server: str, token: str, job_id: str, total: int, concurrency: int, max_seconds: float) -> dict:
    """Issue `total` GETs over `concurrency` keep-alive connections; stop issuing after `max_seconds`."""
    from urllib.parse import urlsplit

    url = urlsplit(server)
    request = (f"GET /v1/jobs/{job_id} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
               "Accept: application/json\r\n\r\n").encode()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    remaining = [total]
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker() -> None:
        connection = _Connection(url.hostname, url.port or 80, request)
        try:
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                t0 = time.perf_counter()
                try:
                    key = str(await asyncio.wait_for(connection.get(), timeout=60))
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                    key = type(exc).__name__  # counted, not fatal: the run goes on
                    connection.close()
                    connection = _Connection(url.hostname, url.port or 80, request)
                latencies.append(time.perf_counter() - t0)
                statuses[key] = statuses.get(key, 0) + 1
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "planned": total,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p90_ms": round(percentile(latencies, 90) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "statuses": statuses,
        "stopped_by_time_limit": len(latencies) < total,
    }


def server_histogram(server: str, route: str) -> dict[float, float]:
    """Cumulative request-duration bucket counts of one GET route, from the server's /metrics."""
    import httpx

    prefix = f'genview_http_request_duration_seconds_bucket{{method="GET",route="{route}",le="'
    buckets = {}
    for line in httpx.get(server + "/metrics", timeout=60).text.splitlines():
        if line.startswith(prefix):
            bound, count = line[len(prefix):].split('"} ')
            buckets[float(bound)] = float(count)
    return buckets


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> str:
    """The bucket bound holding quantile q of the requests counted between two /metrics readings."""
    diff = {bound: after.get(bound, 0) - before.get(bound, 0) for bound in after}
    total = diff.get(float("inf"), 0)
    if not total:
        return "n/a"
    for bound in sorted(diff):
        if diff[bound] >= q * total:
            return f"<= {bound * 1000:g} ms" if bound != float("inf") else "> 10 s"
    return "n/a"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(workdir: Path) -> tuple[subprocess.Popen, str, str]:
    """Start `genview serve` in workdir with a tiny random IC-GAN and an image folder; return (proc, url, weights)."""
    from genview.cli.models import init_random_model
    from genview.synthetic_data import make_image_folder

    make_image_folder(workdir / "imgs", classes=4, per_class=10, size=48, seed=0)
    init_random_model("icgan", "tiny", str(workdir / "weights"), seed=0)
    (workdir / "genview.toml").write_text(f'[tokens."{TOKEN}"]\nname = "bench"\n')
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENVIEW_")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    log = open(workdir / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "genview.cli.main", "serve", "--port", str(port), "--settings",
                             "genview.toml", "--log-level", "warning"], cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError((workdir / "server.log").read_text())
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url, str(workdir / "weights")
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def main() -> int:
    """Run the benchmark (or, with --load-only, just the load generator: the second process)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", help="an existing service URL (default: start one here)")
    parser.add_argument("--token", default=TOKEN, help="bearer token for --server")
    parser.add_argument("--job-id", help="job to read (default: submit one)")
    parser.add_argument("--requests", type=int, default=2000, help="GET /v1/jobs/{id} requests in total")
    parser.add_argument("--concurrency", type=int, default=200, help="requests in flight at once")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop issuing requests after this long")
    parser.add_argument("--load-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load_only:
        result = asyncio.run(_load(args.server, args.token, args.job_id, args.requests, args.concurrency, args.max_seconds))
        print(json.dumps(result))
        return 0

    import httpx

    proc = None
    with tempfile.TemporaryDirectory(prefix="genview-bench-") as tmp:
        try:
            server, token, job_id = args.server, args.token, args.job_id
            if server is None:
                proc, server, weights = start_server(Path(tmp))
                spec = {"source": "imgs", "model": "icgan", "weights": weights, "k": 4, "shard_size": 2,
                        "best_of": 8, "device": "cpu", "io_threads": 1, "out": "store"}
                response = httpx.post(server + "/v1/jobs", json=spec, headers={"Authorization": f"Bearer {token}"})
                response.raise_for_status()
                job_id = response.json()["id"]
                # Measure while the worker generates: status reads then include a live store-progress lookup.
                for _ in range(600):
                    job = httpx.get(f"{server}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"},
                                    timeout=60).json()
                    if job["progress"]["sources_done"] > 0 or job["state"] not in ("queued", "running"):
                        break
                    time.sleep(0.2)
            if job_id is None:
                parser.error("--job-id is required with --server")
            headers = {"Authorization": f"Bearer {token}"}
            before = httpx.get(f"{server}/v1/jobs/{job_id}", headers=headers, timeout=60).json()
            hist_before = server_histogram(server, "/v1/jobs/{job_id}")
            # The second process: the load generator shares no interpreter (or GIL) with the server.
            load = subprocess.run(
                [sys.executable, __file__, "--load-only", "--server", server, "--token", token, "--job-id", job_id,
                 "--requests", str(args.requests), "--concurrency", str(args.concurrency),
                 "--max-seconds", str(args.max_seconds)],
                capture_output=True, text=True, check=True,
            )
            result = json.loads(load.stdout.strip().splitlines()[-1])
            hist_after = server_histogram(server, "/v1/jobs/{job_id}")
            after = httpx.get(f"{server}/v1/jobs/{job_id}", headers=headers, timeout=60).json()
            result["server_side_p50"] = histogram_quantile(hist_before, hist_after, 0.5)
            result["server_side_p99"] = histogram_quantile(hist_before, hist_after, 0.99)
            result["job_state"] = f"{before['state']} -> {after['state']}"
            result["job_progress"] = f"{after['progress']['sources_done']}/{after['progress']['sources_total']} sources"
            print(f"GET /v1/jobs/{{id}}: {result['requests']} requests ({result['planned']} planned) at concurrency "
                  f"{result['concurrency']} in {result['seconds']} s -> {result['req_per_s']} req/s")
            print(f"latency p50 {result['p50_ms']} ms  p90 {result['p90_ms']} ms  p99 {result['p99_ms']} ms  "
                  f"max {result['max_ms']} ms  mean {result['mean_ms']} ms")
            print(f"inside the server (ASGI app, from /metrics buckets): p50 {result['server_side_p50']}, "
                  f"p99 {result['server_side_p99']}")
            print(f"statuses {result['statuses']}; job {result['job_state']} ({result['job_progress']})")
            print(json.dumps(result))
            if proc is not None and after["state"] in ("queued", "running"):
                httpx.post(f"{server}/v1/jobs/{job_id}/cancel", headers=headers, timeout=60)
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
