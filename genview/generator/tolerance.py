"""How far a view's pixels may move between batch sizes, per model, at its default settings (levels of 255).

A view's noise and condition never depend on its batch; its pixels can, because kernels choose their
blocking (so their summation order) from the batch size and the thread count. One level for the
single-pass models. E-LDM runs 50 DDIM steps with classifier-free guidance 6 by default (Gen-SIS):
eps = eps_null + 6 (eps_cond - eps_null) multiplies a rounding difference between the two branches by
up to 2 x 6 - 1 = 11 at every step, so its views may differ by more: batch 1 and batch 8 have been
seen 3 levels apart with several torch threads. tests/generator/test_batch_tolerance.py measures each
model at its defaults against this table; ``--exact`` (row by row) is byte-identical.
"""

from __future__ import annotations

BATCH_TOLERANCE_LEVELS = {"icgan": 1, "cc-icgan": 1, "unclip": 1, "eldm": 3}
