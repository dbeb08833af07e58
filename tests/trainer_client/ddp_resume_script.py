"""One epoch of DDP training over a genview store that checkpoints its loader after every step (torchrun, 2 CPU processes).

    python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_resume_script.py STORE OUT [--resume]

Each rank logs the source ids of every batch to OUT/rank{R}.{run|resume}.jsonl *before* training on
it (so a batch in a checkpoint's past is always logged on both ranks: rank 0 checkpoints after the
step's all-reduce, which the other rank reaches only after logging). Rank 0 alone saves
OUT/checkpoint.pt = {"steps", "model", "loader": loader.state_dict()}, as Lightning saves from rank 0;
``--resume`` loads it on every rank and finishes the epoch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchvision import transforms as T

from genview.trainer_client import GenViewDataset, SinglePolicy


def main() -> None:
    """Train (or resume) one epoch and log what each step read."""
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--step-sleep", type=float, default=0.0, help="seconds per step, so a kill lands mid-epoch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    out = Path(args.out)
    model = DistributedDataParallel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ds = GenViewDataset(args.store, SinglePolicy(p=0.5, transform=T.Compose([T.Resize(8), T.ToTensor()])), seed=1, epoch=1)
    loader = ds.loader(3, num_workers=args.workers)
    steps = 0
    if args.resume:
        checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
        model.load_state_dict(checkpoint["model"])
        loader.load_state_dict(checkpoint["loader"])
        steps = checkpoint["steps"]
    phase = "resume" if args.resume else "run"
    with open(out / f"rank{rank}.{phase}.jsonl", "a") as log:
        for batch in loader:
            log.write(json.dumps({"pid": os.getpid(), "epoch": ds.epoch, "step": steps,
                                  "ids": [int(i) for i in batch["source_id"]]}) + "\n")
            log.flush()
            loss = nn.functional.cross_entropy(model(batch["image"]), batch["label_index"].clamp(min=0))
            optimizer.zero_grad()
            loss.backward()  # all-reduce: both ranks are at this step
            optimizer.step()
            steps += 1
            if rank == 0:
                tmp = out / "checkpoint.pt.tmp"
                torch.save({"steps": steps, "model": model.state_dict(), "loader": loader.state_dict()}, tmp)
                os.replace(tmp, out / "checkpoint.pt")
            time.sleep(args.step_sleep)
    (out / f"rank{rank}.{phase}.done").write_text(str(steps))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
