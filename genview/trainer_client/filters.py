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


#: Scores ``min_similarity`` can apply to: the manifest's (the generator's own encoder) or the independent
#: scorer's cosine that `genview quality --scorer` stored in quality/views.parquet.
SIMILARITY_SOURCES = ("similarity", "independent")


@dataclass(frozen=True)
class ViewFilter:
    """Which generated views are eligible: a similarity floor and excluded classes.

    ``min_similarity``: a view whose score (``similarity_from``: the manifest's ``similarity``, or
    ``independent``, the score of an encoder that did not condition the generator, from the store's
    quality tables) is below it (or missing) is not used. ``exclude_labels``: classes that never get
    generated views, given as label names (str, the manifest's ``label``) or label indices (int,
    sources.parquet's ``label_index``). ``exclude``: a rule over the store's own per-class quality
    table (``genview quality``), e.g. ``"fid>=150"``, ``"nn_corruption>0.5"``, several joined by
    commas; ``True`` or ``"da-icgan"`` is DA IC-GAN's rule, FID >= 150 (seed 004, App. B.2).
    """

    min_similarity: float | None = None
    exclude_labels: frozenset = field(default_factory=frozenset)
    exclude: str | bool | None = None
    similarity_from: str = "similarity"

    def __post_init__(self) -> None:
        from genview.quality.rules import DA_ICGAN_RULE, parse_rules

        object.__setattr__(self, "exclude_labels", frozenset(self.exclude_labels))
        if self.exclude is True:
            object.__setattr__(self, "exclude", DA_ICGAN_RULE)
        elif self.exclude is False:
            object.__setattr__(self, "exclude", None)
        if self.exclude is not None:
            parse_rules(self.exclude)  # a bad rule fails here, not mid-training
        if self.similarity_from not in SIMILARITY_SOURCES:
            raise ValueError(f"similarity_from must be one of {', '.join(SIMILARITY_SOURCES)}, got {self.similarity_from!r}")

    @property
    def active(self) -> bool:
        """True when the filter can make a view ineligible."""
        return self.min_similarity is not None or bool(self.exclude_labels) or self.exclude is not None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able settings."""
        return {
            "min_similarity": self.min_similarity, "similarity_from": self.similarity_from,
            "exclude_labels": sorted(self.exclude_labels, key=str), "exclude": self.exclude,
        }


def _quality_table(index: StoreIndex, which: str, needed_for: str) -> pa.Table:
    """Read one of the store's quality tables; a clear error when `genview quality` has not run."""
    from genview.quality import tables

    table = (tables.read_classes if which == "classes" else tables.read_views)(index.fs, index.root)
    if table is None:
        raise ValueError(f"{needed_for} needs {index.url}'s quality tables: run `genview quality {index.url}` first")
    return table


def quality_excluded_labels(index: StoreIndex, rule: str) -> frozenset[str]:
    """Return the labels a rule such as ``fid>=150`` excludes, from the store's quality/classes.parquet."""
    from genview.quality.rules import excluded_labels, parse_rules

    classes = _quality_table(index, "classes", f"exclude={rule!r}")
    rows = [r for r in classes.to_pylist() if r["scope"] == "class"]
    return excluded_labels(rows, parse_rules(rule))


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


def _independent_lookup(index: StoreIndex):
    """A function (source ids, views) -> the independent score of each row (NaN where it was not measured)."""
    table = _quality_table(index, "views", "min_similarity with similarity_from='independent'")
    width = np.int64(max(index.k, 1))
    keys = table.column("source_id").to_numpy(zero_copy_only=False).astype(np.int64) * width + table.column("view").to_numpy(
        zero_copy_only=False
    ).astype(np.int64)
    scores = table.column("independent").to_numpy(zero_copy_only=False).astype(np.float64)
    order = np.argsort(keys)
    keys, scores = keys[order], scores[order]

    def lookup(source_ids: np.ndarray, views: np.ndarray) -> np.ndarray:
        wanted = source_ids * width + views
        pos = np.clip(np.searchsorted(keys, wanted), 0, max(len(keys) - 1, 0))
        out = np.full(len(wanted), np.nan)
        if len(keys):
            hit = keys[pos] == wanted
            out[hit] = scores[pos[hit]]
        return out

    return lookup


def eligible_views(index: StoreIndex, view_filter: ViewFilter) -> EligibleViews:
    """Evaluate a ViewFilter over the store's manifest (ok view rows) and return the eligibility matrix.

    The filter runs inside the scan (predicate pushdown): only (source_id, view) of the eligible
    rows come out, batch by batch, into a [sources, K] bool matrix over sources.parquet's ids, so
    memory is the matrix (1 byte per view), never the manifest.
    """
    ids = np.unique(index.sources(columns=["source_id"]).column("source_id").to_numpy(zero_copy_only=False).astype(np.int64))
    mask = np.zeros((len(ids), index.k), dtype=bool)
    dataset = index.manifest_dataset()
    if dataset is None:
        return EligibleViews(ids, mask)
    where = pc.field("status") == STATUS_OK
    independent = view_filter.min_similarity is not None and view_filter.similarity_from == "independent"
    scores = _independent_lookup(index) if independent else None
    if view_filter.min_similarity is not None and not independent:
        # A missing score cannot show the view is good enough: null/NaN >= x keeps no row.
        where &= pc.field("similarity") >= float(view_filter.min_similarity)
    names = {x for x in view_filter.exclude_labels if isinstance(x, str)}
    if view_filter.exclude is not None:
        names |= quality_excluded_labels(index, str(view_filter.exclude))
    if names:
        where &= ~pc.field("label").isin(pa.array(sorted(names), pa.string()))  # a source with no label stays
    indices = {int(x) for x in view_filter.exclude_labels if not isinstance(x, str)}
    if indices:
        sources = index.sources(columns=["source_id", "label_index"])
        excluded = sources.filter(pc.is_in(sources.column("label_index"), value_set=pa.array(sorted(indices), pa.int32())))
        where &= ~pc.field("source_id").isin(excluded.column("source_id").combine_chunks())
    dense = len(ids) and ids[0] == 0 and ids[-1] == len(ids) - 1  # ids 0..N-1: an id is its row
    for batch in dataset.to_batches(columns=["source_id", "view"], filter=where, batch_size=1 << 16):
        source_ids = batch.column("source_id").to_numpy(zero_copy_only=False).astype(np.int64)
        views = batch.column("view").to_numpy(zero_copy_only=False).astype(np.int64)
        if len(views) and (views.min() < 0 or views.max() >= index.k):
            raise ValueError(f"manifest of {index.url} has view numbers outside 0..{index.k - 1}")
        if independent:
            keep = scores(source_ids, views) >= float(view_filter.min_similarity)
            source_ids, views = source_ids[keep], views[keep]
        rows = source_ids if dense else np.searchsorted(ids, source_ids)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(ids) or not (dense or np.array_equal(ids[rows], source_ids))):
            raise ValueError(f"manifest of {index.url} has source ids that sources.parquet does not list")
        mask[rows, views] = True
    return EligibleViews(ids, mask)
