"""SimCLR with lightly on a genview store: lightly's own transform, loss and heads; genview supplies the batches.

    python examples/lightly_simclr.py STORE --epochs 2 --crop-size 32

The glue is one wrapper: ``lightly_policy(SimCLRTransform(...))`` makes batches the way lightly's
datasets yield them, ``(views, targets, names)``, with view 1 from the source and view 2 from a
generated view (seed 000's default, p = 1). Everything else is lightly's usual SimCLR loop.
Needs ``pip install lightly``.
"""

from __future__ import annotations

import argparse

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from torch import nn

from genview.trainer_client import GenViewDataset, lightly_policy


def backbone(width: int = 16) -> nn.Module:
    """A small CNN standing in for a ResNet (any lightly backbone works the same way)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


def train(store: str, epochs: int = 2, batch_size: int = 16, crop_size: int = 32, max_steps: int | None = None,
          num_workers: int = 0, seed: int = 0) -> list[float]:
    """Train SimCLR; return every step's loss."""
    torch.manual_seed(seed)
    transform = SimCLRTransform(input_size=crop_size, gaussian_blur=0.0)  # lightly's transform, as it is
    dataset = GenViewDataset(store, lightly_policy(transform, p=1.0), seed=seed)
    loader = dataset.loader(batch_size, num_workers=num_workers, drop_last=True)
    encoder, head = backbone(), SimCLRProjectionHead(32, 64, 32)
    criterion = NTXentLoss(temperature=0.2)  # seed 000, Table 6
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    losses: list[float] = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for (x0, x1), _targets, _names in loader:  # lightly's batch layout
            loss = criterion(head(encoder(x0)), head(encoder(x1)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            print(f"epoch {epoch} step {len(losses)}: loss {losses[-1]:.4f}")
            if max_steps is not None and len(losses) >= max_steps:
                return losses
    return losses


def main(argv: list[str] | None = None) -> list[float]:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="store path or URL (s3://...)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-size", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    return train(args.store, args.epochs, args.batch_size, args.crop_size, args.max_steps, args.workers)


if __name__ == "__main__":
    main()
