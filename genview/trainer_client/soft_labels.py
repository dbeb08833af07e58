"""DA IC-GAN's soft labels (seed 004, Eq. 2) for training on generated images: ``GenViewDataset(..., labels="soft")``.

A generated image conditioned on source i follows the classes of i's k-neighbourhood A_i, so DA
IC-GAN trains on it with y_soft_i = (1/k) sum_{j in A_i} y_j instead of y_i. `genview quality`
stores y_soft_i per source (quality/sources.parquet, sparse); this module serves it as a dense
float32 vector of the store's classes under the sample's ``soft_label`` key:

* a policy that returns one image (``view_index``, e.g. ``SinglePolicy``): Eq. 2's vector when the
  image is generated (view_index >= 0), the one-hot label when it is the source itself;
* a policy that returns several images: Eq. 2's vector of the source (the label of its views).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genview.trainer_client.store_index import StoreIndex

LABEL_MODES = ("hard", "soft")


class SoftLabels:
    """Per-source soft labels of a store, read once from its quality tables."""

    def __init__(self, index: StoreIndex):
        from genview.quality import tables

        table = tables.read_sources(index.fs, index.root)
        settings = tables.read_settings(index.fs, index.root) or {}
        if table is None or "num_classes" not in settings:
            raise ValueError(f'labels="soft" needs {index.url}\'s soft labels: run `genview quality {index.url}` first')
        self.num_classes = int(settings["num_classes"])
        self.k_nn = settings.get("k_nn")
        ids = table.column("source_id").to_numpy(zero_copy_only=False).astype(np.int64)
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        rows = [table.column(name).to_pylist() for name in ("soft_label_index", "soft_label_weight")]
        self._sparse = [(np.asarray(rows[0][i], np.int64), np.asarray(rows[1][i], np.float32)) for i in order]

    def vector(self, source_id: int) -> np.ndarray:
        """Return Eq. 2's soft label of a source as a dense float32 [num_classes] vector."""
        i = int(np.searchsorted(self._ids, source_id))
        if i >= len(self._ids) or self._ids[i] != source_id:
            raise KeyError(f"source {source_id} has no soft label: its shard was not measured; rerun `genview quality`")
        out = np.zeros(self.num_classes, dtype=np.float32)
        indices, weights = self._sparse[i]
        out[indices] = weights
        return out

    def one_hot(self, label_index: int) -> np.ndarray:
        """Return the one-hot label of a source image (all zeros for a source without a label)."""
        out = np.zeros(self.num_classes, dtype=np.float32)
        if 0 <= label_index < self.num_classes:
            out[label_index] = 1.0
        return out

    def attach(self, out: Any, source_id: int, label_index: int) -> Any:
        """Add ``soft_label`` to a policy's output dict (see the module docstring for which vector)."""
        if not isinstance(out, dict):
            raise ValueError('labels="soft" needs a policy that returns a dict (PairPolicy, SinglePolicy, TripletPolicy)')
        view = out.get("view_index")
        generated = view is None or int(view) >= 0
        out["soft_label"] = self.vector(source_id) if generated else self.one_hot(label_index)
        return out
