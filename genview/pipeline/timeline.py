"""A simulated accelerator queue on the host clock, for benches and tests without a GPU.

A GPU runs the kernels the host launched on its own clock: a launch returns at once, the batch
finishes when the device has worked through everything queued before it plus its own time, and
the host learns that through an event. `DeviceTimeline` keeps that clock for a stand-in model:
`run(seconds)` queues work and returns at once; `event()` is what `ViewGenerator.device_event`
returns. The engine treats such a model as it treats CUDA (launch ahead, wait in the collector),
so its asynchronous path runs, and is measured, on this machine.
"""

from __future__ import annotations

import threading
import time


class TimelineEvent:
    """A point on a `DeviceTimeline`: the host time at which the device gets there."""

    def __init__(self, at: float):
        self.at = at

    def synchronize(self) -> None:
        """Block until the device has passed this point; the sleep releases the GIL."""
        delay = self.at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    def elapsed_time(self, end: "TimelineEvent") -> float:
        """Device milliseconds from this event to `end` (as `torch.cuda.Event.elapsed_time`)."""
        return (end.at - self.at) * 1000.0


class DeviceTimeline:
    """One device queue: work runs in launch order, each piece after the one before it has finished."""

    def __init__(self) -> None:
        self.free_at = 0.0  # host time at which everything queued so far is done
        self.busy_seconds = 0.0
        self._lock = threading.Lock()

    def run(self, seconds: float) -> TimelineEvent:
        """Queue `seconds` of device work; return (at once) the event of its completion."""
        with self._lock:
            self.free_at = max(time.perf_counter(), self.free_at) + seconds
            self.busy_seconds += seconds
            return TimelineEvent(self.free_at)

    def event(self) -> TimelineEvent:
        """An event after everything queued so far (or now, if the device is idle)."""
        with self._lock:
            return TimelineEvent(max(time.perf_counter(), self.free_at))
