"""Store browser speed: one page of 50 sources x 10 views (HTML + every image) from a local store.

    python bench/bench_browse.py                      # makes a 120-source, K=10 store with tiny IC-GAN weights
    python bench/bench_browse.py --store OUT          # or measures an existing store

Runs `genview browse` (real uvicorn) and fetches a page the way a browser does: the HTML, then
every <img> on it over 6 connections (Chromium's per-host limit). The first page comes right after
start-up (`genview browse` reads the manifest and indexes the first page's shards before it
accepts connections); "warm" pages come after, other shards are indexed on first use. Each image is one ranged read
of its tar member by byte offset. Best of --rounds for the warm pages: the machine is shared.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


def make_store(base: Path, sources: int, k: int, shard_size: int) -> Path:
    """A real store made by the pipeline with tiny random IC-GAN weights."""
    from genview.cli.models import init_random_model
    from genview.pipeline.runner import generate
    from genview.pipeline.spec import GenerateSpec
    from genview.synthetic_data import make_image_folder

    classes = 4
    make_image_folder(base / "imgs", classes=classes, per_class=-(-sources // classes), size=64, seed=0)
    init_random_model("icgan", "tiny", str(base / "weights"), seed=0)
    spec = GenerateSpec(source=str(base / "imgs"), out=str(base / "store"), model="icgan", weights=str(base / "weights"),
                        k=k, shard_size=shard_size, device="cpu")
    generate(spec, progress=False)
    return base / "store"


def load_page(client: httpx.Client, pool: ThreadPoolExecutor, query: str) -> tuple[float, int, int]:
    """Fetch the page and all its images; return (seconds, images, bytes)."""
    start = time.perf_counter()
    response = client.get("/?" + query)
    response.raise_for_status()
    urls = [html.unescape(u) for u in re.findall(r'<img[^>]* src="([^"]+)"', response.text)]

    def fetch(url: str) -> int:
        r = client.get(url)
        r.raise_for_status()
        return len(r.content)

    sizes = list(pool.map(fetch, urls))
    return time.perf_counter() - start, len(urls), len(response.content) + sum(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="existing store to browse (default: make one)")
    parser.add_argument("--sources", type=int, default=120)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--shard-size", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="bench-browse-")
    store = Path(args.store) if args.store else make_store(Path(tmp.name), args.sources, args.k, args.shard_size)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    server = subprocess.Popen([sys.executable, "-m", "genview.cli.main", "browse", str(store), "--port", str(args.port)],
                              env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(url + "/static/style.css", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=6)) as client, \
                ThreadPoolExecutor(6) as pool:
            cold, images, size = load_page(client, pool, "per_page=50")
            print(f"store {store}: page of 50 sources, {images} images, {size / 1e6:.2f} MB")
            print(f"first page after start-up (the server built its state from the shard summaries at start): {cold * 1000:.0f} ms")
            for query in ("per_page=50", "per_page=50&page=2", "per_page=50&sort=best", "per_page=50&label=class_01"):
                best, images = float("inf"), 0
                for _ in range(args.rounds):
                    seconds, images, _ = load_page(client, pool, query)
                    best = min(best, seconds)
                print(f"warm page ?{query}: {images} images, best of {args.rounds}: {best * 1000:.0f} ms")
    finally:
        server.terminate()
        server.wait(timeout=20)
        tmp.cleanup()


if __name__ == "__main__":
    main()
