"""Exact k nearest neighbours by cosine, in blocks on the device: matmul + top-k per block, merged.

The same brute force as ic_gan's own neighbourhoods (faiss ``IndexFlatL2`` over L2-normalised
features, whose order is the cosine order), without holding a queries x sources matrix: each
block of queries meets each block of sources once, and only the running k best survive. Memory
is O(query_block x source_block + queries x k) whatever the store's size; the work is one
queries x sources x dim matmul, which is what a GPU does fastest.

Both sides may be memory-mapped arrays (genview quality's spilled features): the sources are
moved to the device once when they fit in ``resident_bytes``, otherwise block by block for each
query block, so nothing of the size of the store has to fit in RAM or device memory.
"""

from __future__ import annotations

import numpy as np
import torch

#: Rows per block on each side: a 4096 x 16384 float32 similarity block is 256 MiB.
QUERY_BLOCK = 4096
SOURCE_BLOCK = 16384
#: Sources up to this size (float32) are normalised once and kept on the device; larger ones are streamed.
RESIDENT_BYTES = 4 << 30


def unit_rows(x: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """Return float32 rows scaled to unit L2 norm, on `device`."""
    t = torch.as_tensor(np.array(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32, device=device)
    return torch.nn.functional.normalize(t, dim=1, eps=1e-12)


@torch.no_grad()
def nearest(
    queries: np.ndarray | torch.Tensor,
    sources: np.ndarray | torch.Tensor,
    k: int,
    exclude_self: bool = False,
    device: str | torch.device = "cpu",
    query_block: int = QUERY_BLOCK,
    source_block: int = SOURCE_BLOCK,
    resident_bytes: int = RESIDENT_BYTES,
) -> np.ndarray:
    """Return [Q, k] indices of each query's k most cosine-similar sources, nearest first.

    ``exclude_self``: queries are the sources themselves (row i is source i) and a point is not its
    own neighbour, as in ic_gan (it asks faiss for k + 1 and drops the input sample).
    """
    n_sources = len(sources)
    resident = None
    if n_sources * int(np.prod(np.shape(sources)[1:])) * 4 <= resident_bytes:
        resident = unit_rows(sources, device)

    def source_rows(s0: int) -> torch.Tensor:
        if resident is not None:
            return resident[s0 : s0 + source_block]
        return unit_rows(sources[s0 : s0 + source_block], device)

    k = min(int(k), n_sources - (1 if exclude_self else 0))
    if k < 1:
        raise ValueError("nearest neighbours need at least one other source")
    out = np.empty((len(queries), k), dtype=np.int64)
    for q0 in range(0, len(queries), query_block):
        q = unit_rows(queries[q0 : q0 + query_block], device)
        best_sim = torch.full((len(q), 0), -float("inf"), device=device)
        best_idx = torch.empty((len(q), 0), dtype=torch.int64, device=device)
        for s0 in range(0, n_sources, source_block):
            sims = q @ source_rows(s0).T
            if exclude_self:
                rows = torch.arange(len(q), device=device)
                cols = rows + q0 - s0
                inside = (cols >= 0) & (cols < sims.shape[1])
                sims[rows[inside], cols[inside]] = -float("inf")
            top = min(k, sims.shape[1])
            sim, idx = torch.topk(sims, top, dim=1)
            # Merge with the running best; ties go to the lower source index (stable order of the concatenation).
            best_sim = torch.cat([best_sim, sim], dim=1)
            best_idx = torch.cat([best_idx, idx + s0], dim=1)
            if best_sim.shape[1] > k:
                best_sim, pick = torch.topk(best_sim, k, dim=1)
                best_idx = torch.gather(best_idx, 1, pick)
        order = torch.argsort(best_sim, dim=1, descending=True, stable=True)
        out[q0 : q0 + len(q)] = torch.gather(best_idx, 1, order).cpu().numpy()
    return out


def knn_flops(queries: int, sources: int, dim: int) -> float:
    """Multiply-adds x 2 of the similarity matmuls (the kernel's cost; top-k is O(Q x S) besides)."""
    return 2.0 * queries * sources * dim
