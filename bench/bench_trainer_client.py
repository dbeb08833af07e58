"""Trainer-client read speed: samples/s of GenViewDataset vs ImageFolder on loose files vs a bare webdataset pipeline.

    python bench/bench_trainer_client.py --images 400 --workers 0

All three decode the same JPEG bytes (the store's ``src`` member is the loose file, byte for byte)
with the same PIL decode and the same torchvision transform, through a DataLoader of the same
batch size, shuffled. Measured side by side, several rounds, best round kept: this machine is
shared and noisy, so the ratios are what to compare across changes. A last line shows pair mode
(two decodes per sample: source + a generated view), which is what SSL training reads.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from genview.datastore.layout import sample_key, shard_pattern
from genview.datastore.manifest import STATUS_OK
from genview.datastore.shard_writer import ShardWriter
from genview.datastore.sources import assign_shards, list_sources
from genview.datastore.store import Store
from genview.synthetic_data import make_image_folder
from genview.trainer_client import GenViewDataset, PairPolicy, SinglePolicy


def write_store(folder: Path, out: Path, k: int, shard_size: int) -> int:
    """Write a store whose sources are the folder's files (bytes untouched) and views are cheap edits of them."""
    sources = assign_shards(list_sources(str(folder)), shard_size)
    store = Store(str(out))
    store.write_header({"model": "bench", "k": k, "seed": 0, "params": {}, "shard_size": shard_size,
                        "source": str(folder), "view_format": "jpg"}, {})
    store.write_sources(sources)
    store.prepare_dirs()
    records = sources.to_pylist()
    for shard in sorted({r["shard"] for r in records}):
        with ShardWriter(store, shard) as writer:
            for rec in (r for r in records if r["shard"] == shard):
                key = sample_key(rec["source_id"])
                data = Path(rec["uri"]).read_bytes()
                members = {"src.jpg": data}
                image = Image.open(io.BytesIO(data)).convert("RGB")
                rows = []
                for j in range(k):
                    buffer = io.BytesIO()
                    image.rotate(90 * (j + 1)).save(buffer, format="JPEG", quality=90)
                    members[f"v{j}.jpg"] = buffer.getvalue()
                    rows.append({"key": key, "source_id": rec["source_id"], "source_uri": rec["uri"],
                                 "label": rec["label"], "shard": shard, "view": j, "member": f"{key}.v{j}.jpg",
                                 "status": STATUS_OK, "similarity": 1.0, "bytes": len(members[f"v{j}.jpg"])})
                members["json"] = (
                    '{"source_id": %d, "label": "%s", "label_index": %d}' % (rec["source_id"], rec["label"], rec["label_index"])
                ).encode()
                writer.write_sample(key, members)
                writer.add_rows(rows)
            writer.commit({})
    return max(r["shard"] for r in records) + 1


def decode(data: bytes) -> Image.Image:
    """The one decode every pipeline uses (PIL, RGB)."""
    return Image.open(io.BytesIO(data)).convert("RGB")


def passes(loader: DataLoader, n: int):
    """Yield the loader's batches over n passes, as a training loop would (set_epoch each pass)."""
    for _ in range(n):
        dataset = loader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(dataset.epoch + 1)
        yield from loader


def time_loader(loader: DataLoader, epochs: int) -> float:
    """Return samples/s over `epochs` passes (after one warm-up pass)."""
    for _ in passes(loader, 1):
        continue  # warm-up: the batches are thrown away
    count, start = 0, time.perf_counter()
    for batch in passes(loader, epochs):
        count += len(batch["key"] if isinstance(batch, dict) else batch[1])
    return count / (time.perf_counter() - start)


def main() -> None:
    """Build the data, time the pipelines in interleaved rounds, print samples/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=160, help="side of the synthetic JPEGs")
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    transform = T.Compose([T.RandomResizedCrop(args.crop), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_image_folder(tmp / "images", classes=4, per_class=args.images // 4, size=args.size, seed=0)
        shards = write_store(tmp / "images", tmp / "store", args.k, args.shard_size)
        urls = shard_pattern(str(tmp / "store"), shards)
        loader_kw = dict(batch_size=args.batch_size, num_workers=args.workers)

        client = GenViewDataset(str(tmp / "store"), SinglePolicy(p=0.0, transform=transform))
        pairs = GenViewDataset(str(tmp / "store"), PairPolicy(p=1.0, transforms=(transform, transform)))
        folder = datasets.ImageFolder(str(tmp / "images"), transform=transform, loader=lambda p: decode(Path(p).read_bytes()))
        bare = (
            wds.WebDataset(urls, shardshuffle=False, empty_check=False)
            .shuffle(256)
            .map(lambda s: {"image": transform(decode(s["src.jpg"])), "key": s["__key__"]})
        )
        pipelines = {
            # ds.loader: workers hand out whole batches, so len(loader) is exact (plain DataLoader otherwise).
            "genview client": client.loader(**loader_kw),
            "ImageFolder (loose files)": DataLoader(folder, shuffle=True, **loader_kw),
            "bare webdataset": DataLoader(bare, **loader_kw),
            "genview client, pair mode": pairs.loader(**loader_kw),
        }
        best = dict.fromkeys(pipelines, 0.0)
        for _ in range(args.rounds):
            for name, loader in pipelines.items():
                best[name] = max(best[name], time_loader(loader, args.epochs))
        print(f"{args.images} images {args.size}px -> crop {args.crop}, batch {args.batch_size}, "
              f"workers {args.workers}, {shards} shards, best of {args.rounds} rounds x {args.epochs} epochs")
        for name, rate in best.items():
            print(f"  {name:28s} {rate:8.1f} samples/s")
        print(f"  ratio client / ImageFolder      {best['genview client'] / best['ImageFolder (loose files)']:.2f}")
        print(f"  ratio client / bare webdataset  {best['genview client'] / best['bare webdataset']:.2f}")


if __name__ == "__main__":
    main()
