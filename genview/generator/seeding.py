"""Per-view seeds: the noise of view j of source s depends only on (job seed, source id, j)."""

from __future__ import annotations

import hashlib

import torch


def view_seed(job_seed: int, source_id: int, view: int, candidate: int = 0) -> int:
    """Return the 63-bit seed of one (source, view, best-of candidate), stable across runs and machines."""
    text = f"genview:{int(job_seed)}:{int(source_id)}:{int(view)}:{int(candidate)}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & (2**63 - 1)


def torch_generator(seed: int) -> torch.Generator:
    """Return a CPU torch.Generator seeded with `seed` (noise is drawn on CPU so every device agrees)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen
