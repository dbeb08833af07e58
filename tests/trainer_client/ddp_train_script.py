"""A tiny DDP training run over a genview store, launched by torchrun (2 CPU processes, gloo).

    python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_train_script.py STORE OUT

Three phases, each a real training loop (forward, backward with DDP's all-reduce, SGD step):
  default:    the default GenViewDataset (even_ranks="pad"), 2 epochs, 2 DataLoader workers, batch 3
  drop_last:  the same with drop_last=True, 1 epoch
  exact:      even_ranks="none" (every sample exactly once), batch 4, inside DDP's Join context
              (ranks may get different batch counts; Join keeps the loop from hanging)
Each rank writes OUT/rank{R}.json: per phase and epoch, len(loader), the batch sizes it trained on
and the source ids it saw. ``--no-join`` leaves Join out of the exact phase (it then hangs until the
gloo timeout when the ranks' batch counts differ: that is what the default prevents).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.join import Join
from torch.nn.parallel import DistributedDataParallel
from torchvision import transforms as T

from genview.trainer_client import GenViewDataset, SinglePolicy


def train_epoch(model, optimizer, loader) -> dict:
    """Train one epoch; return what it read."""
    sizes, ids = [], []
    for batch in loader:
        logits = model(batch["image"])
        loss = nn.functional.cross_entropy(logits, batch["label_index"].clamp(min=0))
        optimizer.zero_grad()
        loss.backward()  # DDP all-reduces the gradients here: every rank must take part
        optimizer.step()
        sizes.append(len(batch["source_id"]))
        ids += [int(i) for i in batch["source_id"]]
    return {"len": len(loader), "sizes": sizes, "ids": ids}


def main() -> None:
    """Run the three phases and write this rank's record."""
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("out")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20.0, help="gloo timeout in seconds: a hang fails fast")
    parser.add_argument("--no-join", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
    rank = dist.get_rank()
    model = DistributedDataParallel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    policy = SinglePolicy(p=0.5, transform=T.Compose([T.Resize(8), T.ToTensor()]))
    record: dict[str, list] = {"default": [], "drop_last": [], "exact": []}

    ds = GenViewDataset(args.store, policy, seed=1)  # the defaults: a user who read nothing else
    loader = ds.loader(3, num_workers=args.workers)
    for epoch in range(2):
        ds.set_epoch(epoch)
        record["default"].append(train_epoch(model, optimizer, loader))

    ds = GenViewDataset(args.store, policy, seed=1, epoch=2)
    record["drop_last"].append(train_epoch(model, optimizer, ds.loader(3, num_workers=args.workers, drop_last=True)))

    ds = GenViewDataset(args.store, policy, seed=1, epoch=3, even_ranks="none")
    with nullcontext() if args.no_join else Join([model]):
        record["exact"].append(train_epoch(model, optimizer, ds.loader(4, num_workers=args.workers)))

    Path(args.out, f"rank{rank}.json").write_text(json.dumps({"rank": rank, "world": dist.get_world_size(),
                                                               "pid": os.getpid(), **record}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
