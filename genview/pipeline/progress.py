"""One progress bar for a whole job: sources done, views/s, failed sources, ETA."""

from __future__ import annotations

import time
from typing import Any, Callable

from tqdm.auto import tqdm


class JobProgress:
    """Counts sources and views as shards report them; shows a tqdm bar unless disabled."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool = True,
                 on_shard: Callable[[dict[str, Any]], None] | None = None):
        self.start = time.perf_counter()
        self.views = 0
        self.failed = 0
        self.on_shard = on_shard
        self.bar = tqdm(total=total, initial=initial, unit="img", desc=desc, disable=not enabled, dynamic_ncols=True)

    def sources_done(self, count: int, views: int, failed: int) -> None:
        """Record `count` finished sources that made `views` views, `failed` of them failed."""
        self.views += views
        self.failed += failed
        self.bar.update(count)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix(views_s=f"{self.views / elapsed:.1f}", failed=self.failed, refresh=False)

    def shard_done(self, stats: dict[str, Any]) -> None:
        """Record a committed shard's stats."""
        if self.on_shard is not None:
            self.on_shard(stats)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()
