"""Quality filters over generated views, computed from the manifest.

A filter never removes a source from training: it only says which of a source's K views may be
used. A source left with no eligible view is trained on its real image, as DA IC-GAN does for the
classes it skips ("DA IC-GAN applied to FID-filtered classes", seed 004, App. B.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from genview.trainer_client.store_index import STATUS_OK, StoreIndex

#: DA IC-GAN's threshold: classes with per-class FID >= 150 are "poorly modeled" (seed 004, App. B.2).
DA_ICGAN_FID_THRESHOLD = 150.0


def classes_above_fid(fid_per_class: Mapping[Any, float], threshold: float = DA_ICGAN_FID_THRESHOLD) -> frozenset:
    """Return the classes whose FID is >= threshold (DA IC-GAN's skip rule), for ViewFilter.exclude_labels."""
    return frozenset(label for label, fid in fid_per_class.items() if float(fid) >= threshold)


@dataclass(frozen=True)
class ViewFilter:
    """Which generated views are eligible: a similarity floor and excluded classes.

    ``min_similarity``: a view whose recorded similarity to its source is below it (or missing)
    is not used. ``exclude_labels``: classes that never get generated views, given as label names
    (str, the manifest's ``label``) or label indices (int, sources.parquet's ``label_index``).
    """

    min_similarity: float | None = None
    exclude_labels: frozenset = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude_labels", frozenset(self.exclude_labels))

    @property
    def active(self) -> bool:
        """True when the filter can make a view ineligible."""
        return self.min_similarity is not None or bool(self.exclude_labels)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able settings."""
        return {"min_similarity": self.min_similarity, "exclude_labels": sorted(self.exclude_labels, key=str)}


class EligibleViews:
    """Per-source eligible views as a [num_sources, K] bool matrix, looked up by source id."""

    def __init__(self, source_ids: np.ndarray, mask: np.ndarray):
        order = np.argsort(source_ids, kind="stable")
        self.source_ids = np.asarray(source_ids, dtype=np.int64)[order]
        self.mask = np.asarray(mask, dtype=bool)[order]

    def views(self, source_id: int) -> tuple[int, ...]:
        """Return the eligible view indices of a source (empty if it is unknown or has none)."""
        i = int(np.searchsorted(self.source_ids, source_id))
        if i >= len(self.source_ids) or self.source_ids[i] != source_id:
            return ()
        return tuple(int(j) for j in np.flatnonzero(self.mask[i]))

    def any_eligible(self, source_ids: Iterable[int]) -> np.ndarray:
        """Return, for each given source id, whether it has at least one eligible view."""
        ids = np.asarray(list(source_ids), dtype=np.int64)
        pos = np.clip(np.searchsorted(self.source_ids, ids), 0, max(len(self.source_ids) - 1, 0))
        if len(self.source_ids) == 0:
            return np.zeros(len(ids), dtype=bool)
        found = self.source_ids[pos] == ids
        return found & self.mask[pos].any(axis=1)


def eligible_views(index: StoreIndex, view_filter: ViewFilter) -> EligibleViews:
    """Evaluate a ViewFilter over the store's manifest (ok view rows) and return the eligibility matrix."""
    table = index.manifest(
        columns=["source_id", "view", "similarity", "label"], filter=pc.field("status") == STATUS_OK
    )
    source_ids = table.column("source_id").to_numpy(zero_copy_only=False).astype(np.int64)
    views = table.column("view").to_numpy(zero_copy_only=False).astype(np.int64)
    if len(views) and (views.min() < 0 or views.max() >= index.k):
        raise ValueError(f"manifest of {index.url} has view numbers outside 0..{index.k - 1}")
    ok = np.ones(len(views), dtype=bool)
    if view_filter.min_similarity is not None:
        sim = table.column("similarity").to_numpy(zero_copy_only=False).astype(np.float64)
        # A missing score cannot show the view is good enough: NaN >= x is False.
        ok &= sim >= float(view_filter.min_similarity)
    names = {x for x in view_filter.exclude_labels if isinstance(x, str)}
    indices = {int(x) for x in view_filter.exclude_labels if not isinstance(x, str)}
    if names:
        ok &= ~np.asarray(pc.is_in(table.column("label"), value_set=pa.array(sorted(names), pa.string())).fill_null(False))
    if indices:
        sources = index.sources(columns=["source_id", "label_index"])
        pairs = zip(sources.column("source_id").to_pylist(), sources.column("label_index").to_pylist())
        excluded_ids = np.asarray([sid for sid, li in pairs if li in indices], dtype=np.int64)
        ok &= ~np.isin(source_ids, excluded_ids)
    unique_ids, row_of = np.unique(source_ids, return_inverse=True)
    mask = np.zeros((len(unique_ids), index.k), dtype=bool)
    mask[row_of[ok], views[ok]] = True
    return EligibleViews(unique_ids, mask)

