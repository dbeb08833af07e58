"""Features of a whole store as row arrays on local disk (numpy memory maps), read back a few rows at a time.

The tables step needs every source's features at once (neighbourhoods search all sources) and the
features of one class at a time (FID, KID), while the per-shard feature files hold them shard by
shard in a random class order. Holding them in memory is what does not scale: at ImageNet x K=10
the Inception and condition features of the views alone are over 200 GB. So the one pass over the
shard files copies the features that are needed again into preallocated `.npy` files in a scratch
folder; the operating system pages them in and out, and each later step reads only the rows it
asks for.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np


class SpilledRows:
    """Row arrays written once by offset and read back as read-only memory maps; the folder is removed on close."""

    def __init__(self, scratch: str | None = None):
        if scratch is not None:
            os.makedirs(scratch, exist_ok=True)
        self.folder = tempfile.mkdtemp(prefix="genview-quality-", dir=scratch)
        self._arrays: dict[str, np.memmap] = {}

    def allocate(self, name: str, rows: int, dim: int) -> None:
        """Create array `name` of [rows, dim] float32 (sparse on disk until written)."""
        self._arrays[name] = np.lib.format.open_memmap(
            os.path.join(self.folder, f"{name}.npy"), mode="w+", dtype=np.float32, shape=(rows, dim)
        )

    def has(self, name: str) -> bool:
        return name in self._arrays

    def write(self, name: str, start: int, rows: np.ndarray) -> None:
        """Write rows at offset `start` of array `name` (allocated before)."""
        self._arrays[name][start : start + len(rows)] = rows

    def read_only(self) -> None:
        """Flush what was written and reopen every array read-only (pages are shared, never copied back)."""
        for name, array in list(self._arrays.items()):
            array.flush()
            del array
            self._arrays[name] = np.load(os.path.join(self.folder, f"{name}.npy"), mmap_mode="r")

    def __getitem__(self, name: str) -> np.memmap:
        return self._arrays[name]

    def bytes_allocated(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())

    def close(self) -> None:
        self._arrays.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "SpilledRows":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RowSubset:
    """Rows `index` of a (memory-mapped) array, indexable like an array: gathers only the rows asked for."""

    def __init__(self, array: np.ndarray, index: np.ndarray):
        self.array, self.index = array, np.asarray(index, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.array.shape[1:])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, pick: Any) -> np.ndarray:
        return np.asarray(self.array[self.index[pick]])
