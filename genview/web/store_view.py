"""What the store pages show, read through genview.datastore: overview, histogram, the sources grid."""

from __future__ import annotations

import dataclasses
import math
import mimetypes
import posixpath
import threading
import time
from typing import Any, Mapping
from urllib.parse import urlencode

import numpy as np
import pyarrow.compute as pc

from genview.datastore import layout
from genview.datastore.inspect import inspect_store
from genview.datastore.manifest import STATUS_OK
from genview.datastore.source_views import SourceViews, manifest_dataset
from genview.datastore.store import Store, StoreError, list_done_markers
from genview.datastore.store_summary import StoreTotals, read_markers
from genview.datastore.summary import HIST_BINS, HIST_HI, HIST_LO
from genview.web.tar_index import ShardMemberIndex

SORTS = {"worst": "worst first", "best": "best first", "source": "source id"}
PAGE_SIZES = (10, 20, 50, 100)
HISTOGRAM_BINS = 20
FAILURES_SHOWN = 200
_GRID_COLUMNS = ["key", "source_id", "source_uri", "label", "shard", "view", "member", "similarity", "primary_weight", "secondary_id"]


class EmptyShard(KeyError):
    """An image was asked of a done shard whose tar is empty or missing; `message` says which."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def empty_shards(store: Store, done: frozenset[int]) -> dict[int, str]:
    """Done shards whose tar is missing or 0 bytes -> what is wrong, from one listing of shards/."""
    folder = store.path("shards")
    try:
        sizes = {posixpath.basename(entry["name"]): int(entry.get("size") or 0)
                 for entry in store.fs.ls(folder, detail=True)}
    except FileNotFoundError:
        sizes = {}
    problems = {}
    for shard in sorted(done):
        name = posixpath.basename(layout.shard_tar(store.root, shard))
        if name not in sizes:
            problems[shard] = f"shard {layout.shard_name(shard)}: its tar {name} is missing"
        elif sizes[name] == 0:
            problems[shard] = f"shard {layout.shard_name(shard)}: its tar {name} is empty (0 bytes)"
    return problems


class QueryError(ValueError):
    """A grid query parameter is malformed; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def _float_param(params: Mapping[str, str], name: str) -> float | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise QueryError(name, f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise QueryError(name, f"not a finite number: {text!r}")
    return value


@dataclasses.dataclass(frozen=True)
class GridQuery:
    """Which sources a grid page shows: order, class, similarity range, page."""

    sort: str = "worst"
    label: str | None = None
    min_sim: float | None = None
    max_sim: float | None = None
    page: int = 1
    per_page: int = 50

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "GridQuery":
        """Parse query-string parameters; QueryError names a bad one."""
        sort = params.get("sort") or "worst"
        if sort not in SORTS:
            raise QueryError("sort", f"one of {', '.join(SORTS)}, not {sort!r}")
        try:
            page = int(params.get("page") or 1)
            per_page = int(params.get("per_page") or 50)
        except ValueError:
            raise QueryError("page", "page and per_page are whole numbers") from None
        if page < 1:
            raise QueryError("page", "starts at 1")
        if per_page not in PAGE_SIZES:
            raise QueryError("per_page", f"one of {', '.join(map(str, PAGE_SIZES))}")
        min_sim, max_sim = _float_param(params, "min"), _float_param(params, "max")
        if min_sim is not None and max_sim is not None and min_sim > max_sim:
            raise QueryError("min", "must not exceed max")
        return cls(sort, params.get("label") or None, min_sim, max_sim, page, per_page)

    def query_string(self, **changes: Any) -> str:
        """This query with some parameters changed, as a URL query string (without '?')."""
        query = dataclasses.replace(self, **changes)
        pairs = {"sort": query.sort, "label": query.label, "min": query.min_sim, "max": query.max_sim,
                 "page": query.page, "per_page": query.per_page}
        defaults = {"sort": "worst", "page": 1, "per_page": 50}
        return urlencode({k: v for k, v in pairs.items() if v is not None and defaults.get(k) != v})


def content_type(member: str) -> str:
    """The MIME type of a tar member by its extension."""
    return mimetypes.guess_type(member)[0] or "application/octet-stream"


def histogram(counts: np.ndarray, bins: int = HISTOGRAM_BINS) -> list[dict[str, float]]:
    """At most `bins` bars over the occupied range of the store's fixed 0.001 similarity bins: [{lo, hi, count}].

    Each bar joins a whole number of fine bins (the first and last hold the lowest and highest
    views), so its edges are exact and a filter from a bar
    (qlo/qhi, 4 decimals) takes in exactly its views.
    """
    nonzero = np.flatnonzero(counts)
    if not len(nonzero):
        return []
    width = (HIST_HI - HIST_LO) / HIST_BINS
    first, last = int(nonzero[0]), int(nonzero[-1]) + 1
    if last - first < bins:  # a range narrower than `bins` fine bins: widened evenly, one fine bin a bar
        first = min(max(first - (bins - (last - first)) // 2, 0), HIST_BINS - bins)
        last = first + bins
    # `bins` bars from the lowest occupied fine bin to the highest, each a whole number of fine bins.
    edges = [first + (i * (last - first)) // bins for i in range(bins + 1)]
    out = []
    for start, stop in zip(edges[:-1], edges[1:]):
        lo, hi = HIST_LO + start * width, HIST_LO + stop * width
        out.append({"lo": lo, "hi": hi, "count": int(counts[start:stop].sum()),
                    "qlo": math.floor(lo * 1e4 + 1e-6) / 1e4, "qhi": math.ceil(hi * 1e4 - 1e-6) / 1e4})
    return out


class StoreView:
    """Everything the pages of one store need; shards committed since are added (checked at most every `max_age` s).

    Nothing holds the whole manifest: counts, classes and the histogram add up the shards'
    summaries, the grid sorts a per-source similarity table (`SourceViews`), and a page's rows are
    read from the fragments of the page's shards only.
    """

    def __init__(self, url: str, max_age: float = 2.0):
        self.url = url
        self.store = Store(url)
        self.max_age = max_age
        self.members = ShardMemberIndex(self.store)
        self._lock = threading.Lock()
        self._checked_at = -math.inf
        self._done: frozenset[int] | None = None
        self._state: dict[str, Any] = {}

    # -- loading ---------------------------------------------------------------------------
    def _current(self) -> dict[str, Any]:
        """The loaded state, with the shards committed since added."""
        with self._lock:
            if not self._state or time.monotonic() - self._checked_at >= self.max_age:
                if not self.store.exists():
                    raise StoreError(f"{self.url} holds no store yet (no genview.json)")
                markers = list_done_markers(self.store.fs, self.store.root)
                done = frozenset(markers)
                if not self._state or not (self._done or frozenset()) <= done:
                    self._state = self._load()  # first read, or shards were taken away (reset, repair)
                    self._done = frozenset()
                if done != self._done:
                    self._add(self._state, {s: markers[s] for s in done - self._done})
                    self._state["empty_shards"] = empty_shards(self.store, done)
                    self._done = done
                self._checked_at = time.monotonic()  # only after a successful read: a missing store is asked again
            return self._state

    def _load(self) -> dict[str, Any]:
        header = self.store.read_header()
        spec = header.get("spec", {})
        return {"totals": StoreTotals(), "sources": SourceViews(self.store.fs, self.store.root, int(spec.get("k", 1))),
                "spec": spec, "header": header, "empty_shards": {}}

    def _add(self, state: dict[str, Any], marker_paths: dict[int, str]) -> None:
        """Add newly done shards: their summaries and their sources' similarities; nothing else is re-read."""
        markers = read_markers(self.store.fs, marker_paths)
        state["totals"].add_shards(self.store.fs, self.store.root, markers)
        state["sources"].add_shards(markers)
        state["summary"] = inspect_store(self.url, worst=0, by_label_limit=10_000, totals=state["totals"])
        state["labels"] = state["totals"].labels()

    # -- pages -----------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        """Counts, model and weights, similarity histogram and per-class table, failed sources."""
        state = self._current()
        summary, spec, totals = state["summary"], state["spec"], state["totals"]
        return {
            "summary": summary,
            "spec": spec,
            "weights": spec.get("weights") or {},
            "interpolated": bool(spec.get("interpolate")),
            "histogram": histogram(totals.hist),
            "labels": state["labels"],
            "failures": totals.failures(self.store.fs, self.store.root, FAILURES_SHOWN),
            "failures_total": totals.failed_sources,
            # Shown at the top of the page: their sources have no images to show.
            "empty_shards": list(state["empty_shards"].values()),
        }

    def grid(self, query: GridQuery) -> dict[str, Any]:
        """One page of sources (with their views) matching `query`, in its order."""
        state = self._current()
        table: SourceViews = state["sources"]
        start = (query.page - 1) * query.per_page
        page = table.page(query.sort, start, query.per_page, label=query.label, min_sim=query.min_sim, max_sim=query.max_sim)
        pages = max(1, math.ceil(page.total / query.per_page))
        page_ids = [int(table.ids[r]) for r in page.rows]
        rows = self._page_rows(page_ids, {int(table.shard[r]) for r in page.rows}, query)
        by_source: dict[int, dict[str, Any]] = {}
        for row in rows:
            entry = by_source.setdefault(row["source_id"], {
                "source_id": row["source_id"], "key": row["key"], "shard": row["shard"], "label": row["label"],
                "uri": row["source_uri"], "secondary_id": row["secondary_id"], "views": [],
            })
            entry["views"].append({"view": row["view"], "member": row["member"], "similarity": row["similarity"],
                                   "alpha": row["primary_weight"]})  # Gen-SIS's α: the weight of the source
        sources = []
        for source_id, worst in zip(page_ids, page.worst):
            entry = by_source[source_id]
            entry["views"].sort(key=lambda view: view["view"])
            entry["worst"] = worst
            empty = state["empty_shards"].get(entry["shard"])
            members = {} if empty else self.members.sample_members(entry["shard"], entry["key"])
            entry["source_member"] = next((name for suffix, name in members.items() if suffix.startswith("src.")), None)
            entry["secondary_member"] = next((name for suffix, name in members.items() if suffix.startswith("sec.")), None)
            sources.append(entry)
        return {"sources": sources, "total": page.total, "page": query.page, "pages": pages, "query": query}

    def _page_rows(self, source_ids: list[int], shards: set[int], query: GridQuery) -> list[dict[str, Any]]:
        """The ok manifest rows of a page's sources (views inside the query's range), from those shards' fragments only."""
        if not source_ids:
            return []
        where = (pc.field("status") == STATUS_OK) & pc.field("source_id").isin(source_ids)
        if query.min_sim is not None:
            where &= pc.field("similarity") >= query.min_sim
        if query.max_sim is not None:
            where &= pc.field("similarity") <= query.max_sim
        dataset = manifest_dataset(self.store.fs, self.store.root, shards)
        return dataset.to_table(columns=_GRID_COLUMNS, filter=where).to_pylist()

    def image(self, shard: int, member: str) -> tuple[bytes, str]:
        """One member's bytes (by byte offset) and MIME type; KeyError for a member the shard lacks."""
        if shard not in (self._done or frozenset()):
            self._current()
            if shard not in (self._done or frozenset()):
                raise KeyError(member)
        problem = self._current()["empty_shards"].get(shard)
        if problem is not None:
            raise EmptyShard(problem)
        return self.members.read(shard, member), content_type(member)


class StoreViews:
    """A small cache of StoreView by URL (the dashboard opens the store of whichever job is looked at)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._views: dict[str, StoreView] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> StoreView:
        """The view of the store at `url`, opened on first use."""
        with self._lock:
            view = self._views.pop(url, None) or StoreView(url)
            self._views[url] = view  # most recently used last
            while len(self._views) > self.size:
                self._views.pop(next(iter(self._views))).members.close()
            return view
