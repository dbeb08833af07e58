"""Process-level plumbing shared by the datasets: DDP rank discovery and an epoch counter workers see."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.context import get_spawning_popen

import torch


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Return (rank, world_size): explicit, else torch.distributed, else RANK/WORLD_SIZE env, else (0, 1)."""
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ValueError("pass both rank and world_size, or neither (then torch.distributed / env is used)")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in range for world_size {world_size}")
        return int(rank), int(world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


class SharedEpoch:
    """An epoch number in shared memory, so DataLoader workers (persistent ones too) see set_epoch.

    It is shared with worker processes that are forked or spawned from the process that made it;
    pickled in any other way (deepcopy, saving) it becomes a private copy of the current value.
    """

    def __init__(self, value: int = 0):
        self._value = multiprocessing.RawValue("q", int(value))

    def get(self) -> int:
        """Return the current epoch."""
        return int(self._value.value)

    def set(self, value: int) -> None:
        """Set the epoch (seen by every worker sharing this counter)."""
        if int(value) < 0:
            raise ValueError(f"epoch must be >= 0, got {value}")
        self._value.value = int(value)

    def __getstate__(self) -> dict:
        if get_spawning_popen() is not None:
            return {"shared": self._value}  # a worker being started: pass the shared memory itself
        return {"value": self.get()}

    def __setstate__(self, state: dict) -> None:
        self._value = state["shared"] if "shared" in state else multiprocessing.RawValue("q", state["value"])
