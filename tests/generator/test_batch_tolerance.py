"""Each model's views, batched vs one at a time, at its DEFAULT settings, within the documented tolerance."""

from __future__ import annotations

import pytest
import torch

from genview.generator.registry import get_generator_class
from genview.generator.tolerance import BATCH_TOLERANCE_LEVELS

ROWS = 3


def _batch_vs_rows(model) -> int:
    """Return the largest pixel difference between one batch of ROWS views and the same views one by one."""
    g = torch.Generator().manual_seed(5)
    sources = torch.randint(0, 256, (ROWS, 3, 40, 48), dtype=torch.uint8, generator=g)
    emb = model.embed(sources)
    seeds = [101 + i for i in range(ROWS)]
    labels = torch.arange(ROWS) if model.needs_labels else None
    whole = model.generate(emb, seeds, labels)
    alone = torch.cat([model.generate(emb[i : i + 1], seeds[i : i + 1], None if labels is None else labels[i : i + 1])
                       for i in range(ROWS)])
    return int((whole.int() - alone.int()).abs().max())


@pytest.mark.parametrize("name", sorted(BATCH_TOLERANCE_LEVELS))
def test_batched_views_stay_within_the_documented_tolerance_at_default_settings(name):
    cls = get_generator_class(name)
    model = cls.from_preset("tiny", seed=0)  # the model's defaults: E-LDM = DDIM 50 steps, guidance 6
    if name == "eldm":
        assert (model.params["steps"], model.params["guidance_scale"]) == (50, 6.0)
    measured = _batch_vs_rows(model)  # at the process's torch threads (1 in CI: OMP_NUM_THREADS=1)
    print(f"{name}: batch {ROWS} vs 1 differ by at most {measured} level(s) ({torch.get_num_threads()} torch thread(s))")
    assert measured <= BATCH_TOLERANCE_LEVELS[name]
