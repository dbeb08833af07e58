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
import pyarrow as pa
import pyarrow.compute as pc

from genview.datastore import layout
from genview.datastore.inspect import inspect_store
from genview.datastore.manifest import STATUS_FAILED, STATUS_OK
from genview.datastore.store import Store, StoreError
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


def histogram(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> list[dict[str, float]]:
    """Equal-width bins over the range of `values`: [{lo, hi, count}]."""
    if values.size == 0:
        return []
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-6:
        lo, hi = lo - 0.005, hi + 0.005
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    # qlo/qhi: the bin's edges widened to 4 decimals, so a filter from the bar includes its own views.
    return [{"lo": float(edges[i]), "hi": float(edges[i + 1]), "count": int(counts[i]),
             "qlo": math.floor(float(edges[i]) * 1e4) / 1e4, "qhi": math.ceil(float(edges[i + 1]) * 1e4) / 1e4}
            for i in range(bins)]


class StoreView:
    """Everything the pages of one store need; re-read when a new shard is done (at most every `max_age` s)."""

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
        """The loaded state, reloaded if shards were committed since."""
        with self._lock:
            if not self._state or time.monotonic() - self._checked_at >= self.max_age:
                if not self.store.exists():
                    raise StoreError(f"{self.url} holds no store yet (no genview.json)")
                done = frozenset(self.store.done_shards())
                if done != self._done or not self._state:
                    self._state = self._load()
                    self._state["empty_shards"] = empty_shards(self.store, done)
                    self._done = done
                self._checked_at = time.monotonic()  # only after a successful read: a missing store is asked again
            return self._state

    def _load(self) -> dict[str, Any]:
        summary = inspect_store(self.url, worst=0, by_label_limit=10_000)
        manifest = self.store.manifest()
        ok = manifest.filter(pc.equal(manifest["status"], STATUS_OK)).select(_GRID_COLUMNS)
        failed = manifest.filter(pc.equal(manifest["status"], STATUS_FAILED))
        similarity = ok["similarity"].drop_null().to_numpy(zero_copy_only=False)
        labels = sorted({label for label in ok["label"].to_pylist() if label is not None})
        header = self.store.read_header()
        return {"summary": summary, "ok": ok, "failed": failed, "similarity": similarity, "labels": labels,
                "spec": header.get("spec", {}), "header": header}

    # -- pages -----------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        """Counts, model and weights, similarity histogram and per-class table, failed sources."""
        state = self._current()
        summary, spec = state["summary"], state["spec"]
        failed = state["failed"].select(["source_id", "source_uri", "label", "error"]).slice(0, FAILURES_SHOWN)
        return {
            "summary": summary,
            "spec": spec,
            "weights": spec.get("weights") or {},
            "interpolated": bool(spec.get("interpolate")),
            "histogram": histogram(state["similarity"]),
            "labels": state["labels"],
            "failures": failed.to_pylist(),
            "failures_total": state["failed"].num_rows,
            # Shown at the top of the page: their sources have no images to show.
            "empty_shards": list(state["empty_shards"].values()),
        }

    def grid(self, query: GridQuery) -> dict[str, Any]:
        """One page of sources (with their views) matching `query`, in its order."""
        state = self._current()
        table: pa.Table = state["ok"]
        if query.label is not None:
            table = table.filter(pc.equal(table["label"], query.label))
        if query.min_sim is not None:
            table = table.filter(pc.greater_equal(table["similarity"], query.min_sim))
        if query.max_sim is not None:
            table = table.filter(pc.less_equal(table["similarity"], query.max_sim))
        per_source = table.group_by("source_id").aggregate([("similarity", "min")])
        if query.sort == "source":
            keys = [("source_id", "ascending")]
        else:
            direction = "ascending" if query.sort == "worst" else "descending"
            keys = [("similarity_min", direction), ("source_id", "ascending")]
        per_source = per_source.sort_by(keys)
        total = per_source.num_rows
        pages = max(1, math.ceil(total / query.per_page))
        start = (query.page - 1) * query.per_page
        page_ids = per_source["source_id"].slice(start, query.per_page)
        rows = table.filter(pc.is_in(table["source_id"], value_set=page_ids)).to_pylist()
        by_source: dict[int, dict[str, Any]] = {}
        for row in rows:
            entry = by_source.setdefault(row["source_id"], {
                "source_id": row["source_id"], "key": row["key"], "shard": row["shard"], "label": row["label"],
                "uri": row["source_uri"], "secondary_id": row["secondary_id"], "views": [],
            })
            entry["views"].append({"view": row["view"], "member": row["member"], "similarity": row["similarity"],
                                   "alpha": row["primary_weight"]})  # Gen-SIS's α: the weight of the source
        sources = []
        for source_id, worst in zip(page_ids.to_pylist(), per_source["similarity_min"].slice(start, query.per_page).to_pylist()):
            entry = by_source[source_id]
            entry["views"].sort(key=lambda view: view["view"])
            entry["worst"] = worst
            empty = state["empty_shards"].get(entry["shard"])
            members = {} if empty else self.members.sample_members(entry["shard"], entry["key"])
            entry["source_member"] = next((name for suffix, name in members.items() if suffix.startswith("src.")), None)
            entry["secondary_member"] = next((name for suffix, name in members.items() if suffix.startswith("sec.")), None)
            sources.append(entry)
        return {"sources": sources, "total": total, "page": query.page, "pages": pages, "query": query}

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
