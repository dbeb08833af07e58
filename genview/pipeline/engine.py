"""The staged shard engine: readers -> one device stage -> encoders -> one writer, joined by bounded queues.

    feeder thread   submits read+decode of each source to the io pool, in order  -> decoded queue
    device thread   embed (batched), generate, score on the device tensor, resize + uint8 on the device,
                    one copy to (pinned, on CUDA) host memory, non-blocking          -> collected queue
    collector       waits for a batch's end event (while the next batch runs), keeps the best
                    candidates (on a CPU device: resizes the batch), hands finished sources on in order
    io pool         encodes each finished source's views                                   -> (futures)
    writer          (the calling thread) tar member, sha256, manifest rows, progress callback

No stage waits on another except through a bounded queue, so a slow stage shows up as the others
blocking on it; per-stage wall and CPU seconds and the device's busy fraction go into the shard stats.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import time
from concurrent.futures import Executor, Future
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from genview.generator.base import ViewGenerator
from genview.generator.interpolation import interpolate
from genview.generator.seeding import view_seed
from genview.pipeline.encode import resize_views

#: Sentinel that ends a queue's stream.
_END = object()


@dataclasses.dataclass
class StageClock:
    """Wall and CPU seconds per stage, summed over the threads that run it (thread-safe)."""

    wall: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    cpu: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def add(self, stage: str, wall: float, cpu: float) -> None:
        """Add one timed span of a stage."""
        with self.lock:
            self.wall[stage] += wall
            self.cpu[stage] += cpu

    def timed(self, stage: str, fn: Callable, *args: Any) -> Any:
        """Call fn(*args) and add its wall and thread-CPU time to `stage`."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.add(stage, time.perf_counter() - wall, time.thread_time() - cpu)

    def report(self) -> dict[str, dict[str, float]]:
        """Return {stage: {"seconds": wall, "cpu_seconds": cpu}}, rounded."""
        with self.lock:
            return {name: {"seconds": round(self.wall[name], 4), "cpu_seconds": round(self.cpu[name], 4)}
                    for name in sorted(self.wall)}


class _Aborted(Exception):
    """Raised inside a stage thread when another stage has failed."""


def _put(q: queue.Queue, value: Any, abort: threading.Event) -> None:
    """Put into a bounded queue, giving up when the job aborts (so no thread blocks forever)."""
    while True:
        try:
            q.put(value, timeout=0.1)
            return
        except queue.Full:
            if abort.is_set():
                raise _Aborted from None


def _get(q: queue.Queue, abort: threading.Event) -> Any:
    """Get from a queue, giving up when the job aborts."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if abort.is_set():
                raise _Aborted from None


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class _Batch:
    """One device batch in flight: its rows and the host copies still being made."""

    def __init__(self, rows: list, host_pixels: torch.Tensor, host_scores: torch.Tensor, event: Any, seeds: list[int]):
        self.rows, self.host_pixels, self.host_scores, self.event, self.seeds = rows, host_pixels, host_scores, event, seeds


class DeviceStage:
    """Embeds, generates, scores and resizes on the model's device; hands finished sources on in order."""

    def __init__(self, generator: ViewGenerator, settings: Any, clock: StageClock):
        self.generator = generator
        self.settings = settings
        self.clock = clock
        self.device = generator.device
        self.cuda = self.device.type == "cuda"
        self.busy_seconds = 0.0  # time the device had work: forward wall time (synchronous), event time (CUDA)
        self.pinned: list[torch.Tensor] = []  # the two host buffers (CUDA) batches alternate between
        self.batches_run = 0

    # -- forwards (row by row under --exact) ------------------------------------------------
    def _embed(self, images: list | torch.Tensor) -> torch.Tensor:
        if self.settings.exact and len(images) > 1:
            return torch.cat([self.generator.embed_on_device(images[i : i + 1]) for i in range(len(images))])
        return self.generator.embed_on_device(images)

    def _generate(self, conditions: torch.Tensor, seeds: list[int], labels: torch.Tensor | None) -> torch.Tensor:
        gen = self.generator
        if self.settings.exact and len(seeds) > 1:
            return torch.cat([
                gen.generate_on_device(conditions[i : i + 1], seeds[i : i + 1],
                                       labels=None if labels is None else labels[i : i + 1])
                for i in range(len(seeds))
            ])
        return gen.generate_on_device(conditions, seeds, labels=labels)

    # -- steps ------------------------------------------------------------------------------
    def embed_sources(self, items: list) -> None:
        """Compute the condition embedding of each decoded source (and its secondary), batched."""
        good = [it for it in items if it.ok and it.embedding is None]
        good += [it.secondary for it in good if it.secondary is not None]
        if not good:
            return
        embeddings = self._embed([it.image for it in good])
        for it, emb in zip(good, embeddings):
            it.embedding = emb  # stays on the device: conditions are built there

    def launch(self, rows: list, unembedded: list) -> _Batch:
        """Embed the sources not embedded yet, then start one batch of (item, view, candidate) rows.

        Returns the batch with its host copy in flight.
        """
        settings, gen = self.settings, self.generator
        start = time.perf_counter()
        # With device events (CUDA, or a simulated queue) the calls below only launch work: the
        # batch's device time (its sources' embedding included) is read from its events once the
        # collector has waited for the end one.
        begin = gen.device_event()
        self.embed_sources(unembedded)
        embeddings = torch.stack([it.embedding for it, _, _ in rows])
        conditions = embeddings
        if settings.alphas:
            secondaries = torch.stack([it.secondary.embedding for it, _, _ in rows])
            # interpolate(p, s, t) weights the secondary by t; Gen-SIS's alpha weights the primary.
            secondary_weights = [1.0 - settings.alpha(j) for _, j, _ in rows]
            conditions = interpolate(embeddings, secondaries, secondary_weights, settings.interpolation)
        seeds = [view_seed(settings.seed, it.record["source_id"], j, c) for it, j, c in rows]
        labels = None
        if gen.needs_labels:
            labels = torch.tensor([it.record["label_index"] for it, _, _ in rows], dtype=torch.long, device=self.device)
        images = self._generate(conditions, seeds, labels)
        # Every view is scored against what it was conditioned on (the interpolated condition for
        # interpolated views): cosine, as unCLIP's embeddings are raw CLIP vectors.
        view_embeddings = self._embed(images)
        scores = F.cosine_similarity(view_embeddings.float(), conditions.to(view_embeddings.device).float(), dim=1)
        if self.cuda:
            # Resize and NHWC on the device; one non-blocking copy into pinned host memory per batch.
            if settings.view_size:
                images = resize_views(images, settings.view_size, settings.resize_filter)
            pixels = images.permute(0, 2, 3, 1)
            host_pixels, host_scores = self._host_buffers(pixels.shape)
            host_pixels.copy_(pixels, non_blocking=True)
            host_scores.copy_(scores.float(), non_blocking=True)
        else:
            # On a CPU device the resize would be serial work in this thread: the collector does it.
            host_pixels, host_scores = images, scores.float()
        if begin is None:
            self.busy_seconds += time.perf_counter() - start  # synchronous: the forwards have run
        events = None if begin is None else (begin, gen.device_event())
        self.batches_run += 1
        return _Batch(rows, host_pixels, host_scores, events, seeds)

    def _host_buffers(self, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the pinned buffer pair for this batch: two pairs alternate, so one copies while the other is read."""
        slot = self.batches_run % 2
        while len(self.pinned) < 2:
            self.pinned.append((torch.empty(0, dtype=torch.uint8).pin_memory(), torch.empty(0).pin_memory()))
        pixels, scores = self.pinned[slot]
        if pixels.numel() < shape.numel() or scores.numel() < shape[0]:
            pixels = torch.empty(shape.numel(), dtype=torch.uint8).pin_memory()
            scores = torch.empty(shape[0]).pin_memory()
            self.pinned[slot] = (pixels, scores)
        return pixels[: shape.numel()].view(shape), scores[: shape[0]]

    def wait(self, batch: _Batch) -> None:
        """Wait until the device has finished a batch (and its host copy); count its device time."""
        if batch.event is not None:
            begin, end = batch.event
            end.synchronize()
            self.busy_seconds += begin.elapsed_time(end) / 1000.0

    def finish(self, batch: _Batch) -> None:
        """Give each view of a finished batch its pixels, keeping the best candidate."""
        if self.cuda:
            pixels = batch.host_pixels.numpy()
        else:
            # One resize for the whole batch (off the device thread; the same pixels as row by row),
            # then each view is an HWC numpy view of it: the encoders only encode.
            images = batch.host_pixels
            if self.settings.view_size:
                images = resize_views(images, self.settings.view_size, self.settings.resize_filter)
            pixels = images.permute(0, 2, 3, 1).numpy()
        scores = batch.host_scores.tolist()
        for r, ((item, j, _), seed, score) in enumerate(zip(batch.rows, batch.seeds, scores)):
            if item.seeds[j] is None or score > item.similarity[j]:
                # Pinned buffers are reused two batches later: copy the view out of them.
                item.views[j] = pixels[r].copy() if self.cuda else pixels[r]
                item.seeds[j], item.similarity[j] = seed, float(score)
            item.rows_left -= 1


def _rows_of(item: Any, settings: Any) -> list[tuple[Any, int, int]]:
    return [(item, j, c) for j in range(settings.k) for c in range(settings.best_of)]


def device_loop(decoded: queue.Queue, collected: queue.Queue, stage: DeviceStage, slots: threading.Semaphore,
                abort: threading.Event) -> None:
    """The device thread: take decoded sources, embed them, launch full batches; nothing else.

    Everything it produces goes to the collector thread in order (sources, then the batches with
    their rows). At most two batches are launched ahead of the collector (`slots`): one is being
    copied out and handed on while the next computes, and the two pinned host buffers alternate.
    """
    settings, clock = stage.settings, stage.clock
    batch_size = settings.batch_size
    rows: collections.deque = collections.deque()
    unembedded: list = []
    ended = False

    def take() -> bool:
        """Move the next decoded source into the stage (blocking); False once the stream has ended."""
        nonlocal ended
        if ended:
            return False
        future = clock.timed("device_wait_input", _get, decoded, abort)
        if future is _END:
            ended = True
            return False
        item = future.result()
        if item.ok:
            item.views, item.seeds = [None] * settings.k, [None] * settings.k
            item.similarity = [float("-inf")] * settings.k
            item.rows_left = settings.k * settings.best_of
            rows.extend(_rows_of(item, settings))
            unembedded.append(item)
        collected.put(("source", item))
        return True

    while True:
        while len(rows) < batch_size and take():
            continue  # take() appends the next source's rows
        if not rows:
            break
        clock.timed("device_wait_slot", _acquire, slots, abort)
        wall, cpu = time.perf_counter(), time.thread_time()
        # Embed every source taken so far in one batch: their rows are the next to run.
        batch = stage.launch([rows.popleft() for _ in range(min(batch_size, len(rows)))], unembedded)
        unembedded.clear()
        clock.add("device", time.perf_counter() - wall, time.thread_time() - cpu)
        collected.put(("batch", batch))
    collected.put(_END)


def collect_loop(collected: queue.Queue, encoded: queue.Queue, stage: DeviceStage, slots: threading.Semaphore,
                 pool: Executor, encode: Callable, abort: threading.Event) -> None:
    """The collector thread: finish each batch (await its host copy, keep the best candidates), then
    submit every source whose views are all made to the encoders, in source order."""
    clock = stage.clock
    waiting: collections.deque = collections.deque()

    def hand_on() -> None:
        while waiting and (not waiting[0].ok or waiting[0].rows_left == 0):
            item = waiting.popleft()
            future = pool.submit(encode, item) if item.ok else _done(item)
            clock.timed("collect_wait_output", _put, encoded, future, abort)

    while True:
        message = _get(collected, abort)
        if message is _END:
            break
        kind, value = message
        if kind == "batch":
            clock.timed("collect_wait_device", stage.wait, value)
        wall, cpu = time.perf_counter(), time.thread_time()
        if kind == "source":
            waiting.append(value)
        else:
            stage.finish(value)
            slots.release()
        clock.add("collect", time.perf_counter() - wall, time.thread_time() - cpu)
        hand_on()
    hand_on()
    _put(encoded, _END, abort)


def _acquire(slots: threading.Semaphore, abort: threading.Event) -> None:
    """Acquire a semaphore, giving up when the job aborts."""
    while not slots.acquire(timeout=0.1):
        if abort.is_set():
            raise _Aborted


def feed(records: list[dict[str, Any]], pool: Executor, load: Callable, decoded: queue.Queue,
         abort: threading.Event) -> None:
    """The feeder thread: submit every source's read+decode in order; the bounded queue paces it."""
    for record in records:
        _put(decoded, pool.submit(load, record), abort)
    _put(decoded, _END, abort)


def run_stages(records: list[dict[str, Any]], generator: ViewGenerator, settings: Any, pool: Executor,
               load: Callable, encode: Callable, clock: StageClock) -> tuple[Iterator[Any], Callable[[], dict[str, Any]]]:
    """Start the feeder and device threads; return (finished sources in order, a call that joins and reports).

    The iterator yields each source once its views are encoded; the writer (the caller) consumes it.
    A failure in any thread is re-raised from the iterator; closing it early stops every thread.
    """
    # Enough decoded sources for two batches, and work for every io thread.
    per_source = settings.k * settings.best_of
    lookahead = max(2 * -(-settings.batch_size // per_source), 2 * pool_width(pool), 8)
    decoded: queue.Queue = queue.Queue(maxsize=lookahead)
    encoded: queue.Queue = queue.Queue(maxsize=max(4, pool_width(pool) * 2))
    abort = threading.Event()
    errors: list[BaseException] = []
    stage = DeviceStage(generator, settings, clock)
    collected: queue.Queue = queue.Queue()  # device -> collector; bounded in batches by `slots`
    slots = threading.Semaphore(2)

    def guarded(fn: Callable, *args: Any) -> Callable[[], None]:
        def target() -> None:
            try:
                fn(*args)
            except _Aborted:
                return  # another stage failed first: its error is the one the writer reports
            except BaseException as exc:  # noqa: BLE001 - handed to the writer, which re-raises it
                errors.append(exc)
                abort.set()
        return target

    threads = [
        threading.Thread(target=guarded(feed, records, pool, load, decoded, abort), name="genview-feed", daemon=True),
        threading.Thread(target=guarded(device_loop, decoded, collected, stage, slots, abort),
                         name="genview-device", daemon=True),
        threading.Thread(target=guarded(collect_loop, collected, encoded, stage, slots, pool, encode, abort),
                         name="genview-collect", daemon=True),
    ]
    started = time.perf_counter()

    def items() -> Iterator[Any]:
        for thread in threads:
            thread.start()
        finished = False
        try:
            while True:
                try:
                    future = encoded.get(timeout=0.1)
                except queue.Empty:
                    if errors:
                        raise errors[0]
                    continue
                if future is _END:
                    finished = True
                    break
                yield future.result()
        finally:
            if not finished:
                abort.set()  # the writer failed or stopped early: no stage may go on
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]

    def report() -> dict[str, Any]:
        wall = time.perf_counter() - started
        return {"device_busy_seconds": round(stage.busy_seconds, 4),
                "device_busy": round(min(1.0, stage.busy_seconds / wall), 4) if wall > 0 else None,
                "batches": stage.batches_run}

    return items(), report


def pool_width(pool: Executor) -> int:
    """Threads of an executor (ThreadPoolExecutor's _max_workers), 4 when unknown."""
    return int(getattr(pool, "_max_workers", 4) or 4)
