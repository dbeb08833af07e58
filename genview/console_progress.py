"""Progress of a long verb: a tqdm bar (counts, rate, ETA) on a terminal, a periodic plain line otherwise.

Logs (Slurm, CI, a service's job log) get one readable line every `interval` seconds instead of a
bar's carriage returns: `verify: 120/1282 shards (9%), 3.1 shards/s, ETA 6m 15s`.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm.auto import tqdm

#: Seconds between two plain progress lines (when the output is not a terminal).
LINE_INTERVAL = 10.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


class LineProgress:
    """tqdm's update/close/set_postfix_str surface, printing one line per interval (and a last one on close)."""

    def __init__(self, total: int | None, desc: str, unit: str, stream: IO[str], interval: float = LINE_INTERVAL,
                 initial: int = 0):
        self.total, self.desc, self.unit, self.stream, self.interval = total, desc, unit, stream, interval
        self.n = initial
        self.initial = initial
        self.start = self._last = time.monotonic()
        self.postfix = ""

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = (self.n - self.initial) / elapsed
        text = f"{self.desc}: {self.n}"
        if self.total:
            text += f"/{self.total} {self.unit} ({self.n / self.total:.0%})"
        else:
            text += f" {self.unit}"
        text += f", {rate:.3g} {self.unit}/s"
        if self.total and rate > 0 and self.n < self.total:
            text += f", ETA {_duration((self.total - self.n) / rate)}"
        return text + (f", {self.postfix}" if self.postfix else "")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(self.line(), file=self.stream, flush=True)

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.n != self.initial or self.total:
            print(self.line() + f", {_duration(time.monotonic() - self.start)} in all", file=self.stream, flush=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Silent:
    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def progress_bar(total: int | None, desc: str, unit: str = "it", *, enabled: bool = True, initial: int = 0,
                 stream: IO[str] | None = None, interval: float = LINE_INTERVAL):
    """A bar on a terminal, periodic lines elsewhere, nothing when disabled; use as a context manager."""
    stream = stream or sys.stderr
    if not enabled:
        return _Silent()
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream, dynamic_ncols=True)
    return LineProgress(total, desc, unit, stream, interval=interval, initial=initial)
