"""Minimal SimCLR on a genview store: view 1 = source, view 2 = a generated view (seed 000's default).

Runs on CPU in well under a minute on a small store with a tiny ResNet:

    python examples/simclr_minimal.py STORE --epochs 8 --crop-size 32 --strategy generative_crop

The default strategy is the seed's best, "Generative & Standard" (Table 3); on a 32-px toy store
its 0.08-scale crops and strong colour jitter leave too little to learn in a few epochs, so a quick
demo uses "generative_crop" (Table 3's "Generative & Random Crop"). Swap the policy to try the
seed's other settings, e.g. PairPolicy(p=0.5, both=True) (Table 11, "Both Views"). For DDP, build the dataset
after init_process_group; nothing else changes (every rank gets the same number of batches by default).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from genview.trainer_client import GenViewDataset, PairPolicy, nt_xent_loss


class TinyResNet(nn.Module):
    """A 2-block ResNet (torchvision BasicBlocks) with a SimCLR projection head."""

    def __init__(self, width: int = 16, proj_dim: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        down = nn.Sequential(nn.Conv2d(width, 2 * width, 1, stride=2, bias=False), nn.BatchNorm2d(2 * width))
        self.blocks = nn.Sequential(BasicBlock(width, width), BasicBlock(width, 2 * width, stride=2, downsample=down))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.projector = nn.Sequential(nn.Linear(2 * width, 4 * width), nn.ReLU(inplace=True), nn.Linear(4 * width, proj_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the backbone representation [B, 2 * width]."""
        return self.pool(self.blocks(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the projection [B, proj_dim] the contrastive loss uses."""
        return self.projector(self.features(x))


def train(
    store: str,
    epochs: int = 6,
    batch_size: int = 32,
    lr: float = 3e-3,
    crop_size: int = 32,
    p: float = 1.0,
    strategy: str = "generative_standard",
    num_workers: int = 0,
    seed: int = 0,
    log: bool = True,
) -> list[float]:
    """Train SimCLR on the store; return the mean loss of each epoch."""
    torch.manual_seed(seed)
    dataset = GenViewDataset(store, PairPolicy(p=p, strategy=strategy, preset="simclr", crop_size=crop_size), seed=seed)
    # dataset.loader: workers hand out whole batches, so drop_last drops at most one partial batch.
    loader = dataset.loader(batch_size, num_workers=num_workers, drop_last=True)
    model = TinyResNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        start, total, steps = time.perf_counter(), 0.0, 0
        for batch in loader:
            loss = nt_xent_loss(model(batch["view1"]), model(batch["view2"]))  # temperature 0.2, seed 000 Table 6
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        if steps == 0:
            raise SystemExit(f"{store} has fewer samples ({len(dataset)}) than one batch ({batch_size}): lower --batch-size")
        history.append(total / steps)
        if log:
            print(f"epoch {epoch}: loss {history[-1]:.4f} ({steps} steps, {time.perf_counter() - start:.1f}s)")
    return history


def main(argv: list[str] | None = None) -> list[float]:
    """Command-line entry point; returns the per-epoch losses."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="store path or URL (s3://...)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--crop-size", type=int, default=32)
    parser.add_argument("--p", type=float, default=1.0, help="probability that view 2 is a generated view")
    parser.add_argument("--strategy", default="generative_standard",
                        help="generative_standard | generative_crop | generative_only (seed 000, Table 3)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return train(args.store, args.epochs, args.batch_size, args.lr, args.crop_size, args.p, args.strategy, args.workers, args.seed)


if __name__ == "__main__":
    main()
