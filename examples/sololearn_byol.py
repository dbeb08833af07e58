"""BYOL on a genview store with solo-learn's data pipeline shapes: its crop transforms and its batch layout.

    python examples/sololearn_byol.py STORE --epochs 2 --crop-size 32

solo-learn builds a pretraining transform with ``prepare_n_crop_transform`` -- a
``FullTransformPipeline`` of ``NCropAugmentation``s -- and its datasets yield
``(index, [crop, ...], target)``. ``sololearn_policy(pipeline)`` takes that pipeline as it is and
yields the same layout, the first crop from the source and the others from a generated view, so a
solo-learn method's ``training_step(batch, batch_idx)`` reads genview batches unchanged.

solo-learn 1.0.2 pins torch==1.9.1 and does not install next to current torch; when it is not
importable, this script defines its two pipeline classes exactly as solo-learn does (same
attributes, same call), which is all genview relies on.
"""

from __future__ import annotations

import argparse
import copy
from typing import Callable, List

import torch
from torch import nn

from genview.trainer_client import GenViewDataset, preset, sololearn_policy

try:  # solo-learn 1.0.x
    from solo.utils.pretrain_dataloader import FullTransformPipeline, NCropAugmentation
except ImportError:
    try:  # later solo-learn
        from solo.data.pretrain_dataloader import FullTransformPipeline, NCropAugmentation
    except ImportError:

        class NCropAugmentation:  # solo-learn's class (solo/utils/pretrain_dataloader.py, MIT license)
            def __init__(self, transform: Callable, num_crops: int):
                self.transform = transform
                self.num_crops = num_crops

            def __call__(self, x) -> List[torch.Tensor]:
                return [self.transform(x) for _ in range(self.num_crops)]

        class FullTransformPipeline:  # solo-learn's class (solo/utils/pretrain_dataloader.py, MIT license)
            def __init__(self, transforms: Callable) -> None:
                self.transforms = transforms

            def __call__(self, x) -> List[torch.Tensor]:
                out = []
                for transform in self.transforms:
                    out.extend(transform(x))
                return out


def mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Module:
    """BYOL's projector / predictor: Linear-BN-ReLU-Linear."""
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim_out))


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's loss: 2 - 2 cos(prediction, target projection), as solo-learn's byol_loss_func."""
    return 2 - 2 * nn.functional.cosine_similarity(p, z.detach(), dim=-1).mean()


def train(store: str, epochs: int = 2, batch_size: int = 16, crop_size: int = 32, max_steps: int | None = None,
          num_workers: int = 0, seed: int = 0, tau: float = 0.99) -> list[float]:
    """Train BYOL; return every step's loss."""
    torch.manual_seed(seed)
    view1, view2 = preset("byol", crop_size)  # BYOL's asymmetric augmentations
    pipeline = FullTransformPipeline([NCropAugmentation(view1, 1), NCropAugmentation(view2, 1)])
    dataset = GenViewDataset(store, sololearn_policy(pipeline, p=1.0), seed=seed)
    loader = dataset.loader(batch_size, num_workers=num_workers, drop_last=True)
    online = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), mlp(16, 64, 32))
    predictor = mlp(32, 64, 32)
    target = copy.deepcopy(online).requires_grad_(False)
    optimizer = torch.optim.Adam([*online.parameters(), *predictor.parameters()], lr=3e-3)
    losses: list[float] = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for _indexes, (x1, x2), _targets in loader:  # solo-learn's batch layout
            loss = byol_loss(predictor(online(x1)), target(x2)) + byol_loss(predictor(online(x2)), target(x1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # the momentum (EMA) target
                for t, o in zip(target.parameters(), online.parameters()):
                    t.mul_(tau).add_(o, alpha=1 - tau)
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
