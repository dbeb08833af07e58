"""The Ray backend: one long-lived actor per GPU holds the loaded model and runs the same shard function.

Shards are handed out one at a time to whichever actor is free (no static split), so a slow or lost
worker only delays its own shard. Actors are created with ``max_restarts=-1``: Ray brings a dead
actor back (on its node, or elsewhere when the node is gone and capacity allows) and reloads the
model. Its shard goes back to the front of the queue for any free actor, but only once the attempt
that was running it can no longer write: either Ray reports the actor process dead, or Ray's actor
table shows a new incarnation, or a probe queued behind the attempt on the same actor has answered
(actor tasks run in submission order). So two attempts at one shard never write concurrently, and
the commit order of the shard writer (tar, manifest, done marker) keeps each shard whole or absent.

Progress streams back per source through a Ray streaming generator, so the driver shows one bar for
the whole job; the progress of an attempt that dies is taken back off the bar.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import torch

try:
    import ray
    from ray.exceptions import ActorDiedError, RayActorError, RayError, RayTaskError
except ImportError as _exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError(
        "--ray-address / --workers need Ray; install it with: pip install 'genview[ray]'"
    ) from _exc

from genview import confinement
from genview.datastore import layout
from genview.datastore.store import Store
from genview.pipeline.backends import ModelDescription, ShardPlan, cpu_threads
from genview.pipeline.progress import JobProgress
from genview.pipeline.runner import load_generator
from genview.pipeline.shard import SourceItem, ViewSettings, run_shard
from genview.pipeline.spec import GenerateSpec

logger = logging.getLogger(__name__)


#: A one-machine Ray instance (--workers without --ray-address) lives on the loopback device: nothing
#: of it is reachable from the network. Not the literal 127.0.0.1, which Ray swaps for the machine's
#: routable address; on Linux all of 127.0.0.0/8 is loopback (elsewhere Ray keeps 127.0.0.1 itself).
LOCAL_NODE_IP = "127.0.0.2" if sys.platform.startswith("linux") else "127.0.0.1"


class ShardFailedError(RuntimeError):
    """Raised when a shard fails with the same application error on every attempt."""


class ShardWorker:
    """A Ray actor: loads the spec's generator once, then makes whole shards with `run_shard`."""

    def __init__(self, spec_json: str, driver: dict[str, Any] | None = None, policy_json: str | None = None):
        self.spec = GenerateSpec.model_validate_json(spec_json)
        if policy_json:
            # The driver's file roots (job service): this actor opens sources and weights under them too.
            confinement.install(confinement.Policy.from_json(policy_json))
        self.watch: DriverWatch | None = None
        if driver is not None:
            # First, before the model loads: a driver that died meanwhile must not get a worker at all.
            self.watch = DriverWatch(driver)
            self.watch.start()
        self.generator = load_generator(self.spec)
        # torch threads chosen, not inherited: one per CPU Ray reserved for this actor on CPU, 1 beside a GPU.
        reserved = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(cpu_threads(self.spec, self.generator.device.type, max(1, int(reserved))))
        self.pool = ThreadPoolExecutor(max_workers=self.spec.io_threads, thread_name_prefix="genview-io")
        self.store = Store(self.spec.out)

    def describe(self) -> dict[str, Any]:
        """Return the model as this worker runs it (weights digest, resolved params on its device)."""
        return ModelDescription.of(self.generator).to_dict()

    def info(self) -> dict[str, Any]:
        """Return who this incarnation is: actor id, node, pid, device."""
        context = ray.get_runtime_context()
        return {
            "actor_id": context.get_actor_id(),
            "node_id": context.get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "device": str(self.generator.device),
        }

    def run(self, shard: int, records: list[dict[str, Any]], settings: ViewSettings,
            report_seconds: float = 0.5) -> Iterator[dict[str, Any]]:
        """Make one shard; yield {"progress": (sources, views, failed)} deltas, then {"stats": ...}.

        The shard runs in a thread so this generator can stream progress while it works; an
        exception in the shard is raised here after the thread ends (nothing writes after that).
        """
        events: queue.SimpleQueue = queue.SimpleQueue()
        outcome: dict[str, Any] = {}

        def on_source(item: SourceItem) -> None:
            events.put((1, len(item.encoded), 0 if item.ok else 1))

        def target() -> None:
            try:
                # The watch polls, so also ask it right before the commit: a driver that died within
                # the last poll interval must not get this shard committed behind it.
                outcome["stats"] = run_shard(self.store, shard, records, self.generator, settings, self.pool,
                                             on_source=on_source,
                                             before_commit=self.watch.exit_if_gone if self.watch else None)
            except BaseException as exc:  # handed to the caller below, whatever it is
                outcome["error"] = exc
            finally:
                events.put(None)

        thread = threading.Thread(target=target, name=f"genview-shard-{shard}", daemon=True)
        thread.start()
        totals = [0, 0, 0]
        last = time.monotonic()
        finished = False
        while not finished:
            try:
                event = events.get(timeout=report_seconds)
            except queue.Empty:
                event = ()
            if event is None:
                finished = True
            elif event:
                totals = [a + b for a, b in zip(totals, event)]
            if totals[0] and (finished or time.monotonic() - last >= report_seconds):
                yield {"progress": tuple(totals)}
                totals, last = [0, 0, 0], time.monotonic()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        yield {"stats": outcome["stats"]}


def driver_identity() -> dict[str, Any]:
    """Who the driver is, for its workers' DriverWatch: node address, pid, Ray job id."""
    return {"ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
            "job_id": ray.get_runtime_context().get_job_id()}


class DriverWatch(threading.Thread):
    """Ends the worker process as soon as its driver is gone, so no shard is committed behind a dead job.

    Ray reaps a dead driver's actors only once it notices (that took up to 100 s after a SIGKILL,
    during which a worker went on and committed another shard). On the driver's machine its pid is
    checked every `poll_seconds`; elsewhere Ray's job table says whether the job is dead.
    """

    def __init__(self, driver: dict[str, Any], poll_seconds: float = 0.25):
        super().__init__(name="genview-driver-watch", daemon=True)
        self.driver = driver
        self.poll_seconds = poll_seconds
        self.same_node = driver.get("ip") == ray.util.get_node_ip_address()

    def driver_alive(self) -> bool:
        """True while the driver process (or, off its node, its Ray job) is alive."""
        if self.same_node:
            try:
                os.kill(int(self.driver["pid"]), 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True  # exists, owned by someone else
            return True
        return not _job_is_dead(self.driver.get("job_id"))

    def exit_if_gone(self) -> None:
        """Exit this process at once if the driver is gone (a shard in flight is never committed)."""
        if not self.driver_alive():
            logger.warning("genview worker %d: driver %s is gone; exiting", os.getpid(), self.driver)
            os._exit(0)

    def run(self) -> None:
        """Poll until the driver is gone (then `exit_if_gone` ends the process)."""
        while True:
            self.exit_if_gone()
            time.sleep(self.poll_seconds if self.same_node else max(self.poll_seconds, 1.0))


def _job_is_dead(job_id: str | None) -> bool:
    """True when Ray's job table marks the job dead; False when alive or unknown."""
    if not job_id:
        return False
    try:
        from ray._private.state import state as gcs_state

        for job in gcs_state.job_table():
            if job.get("JobID") == job_id:
                return bool(job.get("IsDead"))
    except Exception:  # noqa: BLE001 - a private API that moved only disables this check
        return False
    return False


@dataclasses.dataclass
class _Worker:
    """The driver's view of one actor."""

    index: int
    handle: Any
    state: str = "starting"  # starting | idle | busy | suspect | dead
    info: dict[str, Any] | None = None  # the incarnation that last answered a probe
    probe: Any = None  # ObjectRef of a pending info() call
    probe_at: float = 0.0  # when to send the next probe
    stream: Any = None  # ObjectRefGenerator of the running shard
    shard: int | None = None
    attempt_info: dict[str, Any] | None = None  # the incarnation the running shard was handed to
    reported: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0])
    parked: int | None = None  # a shard whose last attempt (on this actor) may still be writing


def _actor_incarnation(actor_id: str) -> tuple[str | None, int | None, str | None]:
    """Return (state, pid, node id) of an actor from Ray's actor table; Nones when it can't be read."""
    try:
        # The GCS actor table: the state API (ray.util.state) would need the dashboard running.
        from ray._private.state import state as gcs_state

        table = gcs_state.actor_table(actor_id)
    except Exception:  # noqa: BLE001 - a missing private API only costs the fast path; probes still decide
        return None, None, None
    if not table:
        return None, None, None
    return table.get("State"), table.get("Pid"), (table.get("Address") or {}).get("NodeID")


class RayBackend:
    """Runs the plan's shards on Ray actors: one per GPU, or `workers` CPU actors.

    address: a Ray address (``auto``, ``HOST:PORT``, ``ray://HOST:10001``); None starts a local Ray
    instance with `workers` actors (the one-machine multi-process option). num_gpus per actor is 1
    when the cluster has GPUs (or the spec's device is cuda), else 0: set it to force either.
    cpus_per_worker: CPUs reserved per actor, left to its read/decode/encode threads (default: the
    spec's io_threads with GPUs, 1 without). Ray is connected (and, if started here, shut down) in `run`.
    """

    def __init__(self, address: str | None = None, workers: int | None = None, *, num_gpus: float | None = None,
                 cpus_per_worker: float | None = None, resources: dict[str, float] | None = None,
                 max_attempts: int = 3, poll_seconds: float = 0.5, log_to_driver: bool = False):
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        if address is None and workers is None:
            raise ValueError("RayBackend needs a cluster address (--ray-address) or a worker count (--workers)")
        self.address = address
        self.workers = workers
        self.num_gpus = num_gpus
        self.cpus_per_worker = cpus_per_worker
        self.resources = resources or {}
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        self.log_to_driver = log_to_driver
        #: (shard, reason) for every attempt that did not commit: a record of what faults cost.
        self.retried: list[tuple[int, str]] = []
        #: shard -> info() of the actor incarnation that committed it.
        self.committed_by: dict[int, dict[str, Any]] = {}
        #: Shards whose attempt was lost after it had committed (found by their done marker, not redone).
        self.found_done: set[int] = set()
        self._workers: list[_Worker] | None = None  # the job's actors, from `describe` or `run` until `close`
        self._options: dict[str, Any] = {}
        self._started = False  # Ray was started (not joined) by this backend

    # -- cluster ---------------------------------------------------------------------------
    def _connect(self, spec: GenerateSpec) -> bool:
        """Join the cluster (or start a local instance); return True when this call did it."""
        if ray.is_initialized():
            return False
        common = dict(logging_level=logging.WARNING, log_to_driver=self.log_to_driver)
        if self.address:
            ray.init(address=self.address, **common)
        else:
            # Logical CPUs for every requested worker (they are Ray's bookkeeping, not a limit on threads),
            # so --workers N always places N actors; address="local": never join another cluster on this machine.
            per_worker = self.cpus_per_worker or max(1, spec.io_threads)
            cpus = max(os.cpu_count() or 1, int(self.workers * per_worker + 0.999))
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, _node_ip_address=LOCAL_NODE_IP, **common)
        return True

    def _actor_options(self, spec: GenerateSpec, local: bool = False) -> tuple[int, dict[str, Any]]:
        """Return (how many actors, their Ray options) from the cluster's resources and the spec.

        `local`: Ray was started here for this job, so no autoscaler will add GPUs that are missing.
        """
        cluster = ray.cluster_resources()
        gpus = cluster.get("GPU", 0)
        if self.num_gpus is not None:
            num_gpus = self.num_gpus
        elif spec.device == "cpu":
            num_gpus = 0
        elif spec.device.startswith("cuda"):
            num_gpus = 1
        else:  # auto: a GPU per actor when the cluster has any
            num_gpus = 1 if gpus >= 1 else 0
        num_cpus = self.cpus_per_worker
        if num_cpus is None:
            num_cpus = float(spec.io_threads) if num_gpus else 1.0
        count = self.workers
        if count is None:
            if num_gpus:
                count = max(1, int(gpus // num_gpus))
            else:
                count = max(1, sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= num_cpus))
        if local and num_gpus and count * num_gpus > gpus:
            raise ValueError(
                f"--workers {count} with --device {spec.device} needs {count * num_gpus:g} GPU(s) on this machine, "
                f"Ray sees {gpus:g}; use fewer workers or --device cpu"
            )
        options = dict(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            resources=dict(self.resources),
            max_restarts=-1,  # Ray recreates a dead actor (reloading the model) wherever capacity allows
            max_task_retries=0,  # a lost shard is re-queued by the driver for any free actor, not pinned to this one
            scheduling_strategy="SPREAD",
        )
        return count, options

    # -- the job ---------------------------------------------------------------------------
    def _start(self, spec: GenerateSpec) -> None:
        """Connect to Ray and create the actors (once per job; `close` undoes it)."""
        if self._workers is not None:
            return
        self._started = self._connect(spec)
        self._workers = []
        count, options = self._actor_options(spec, local=self._started and not self.address)
        actor_class = ray.remote(ShardWorker)
        spec_json = spec.model_dump_json()
        driver = driver_identity()
        self._options = options
        policy = confinement.active()
        policy_json = policy.to_json() if policy is not None else None
        self._workers = [_Worker(i, actor_class.options(**options).remote(spec_json, driver, policy_json))
                         for i in range(count)]

    def describe(self, spec: GenerateSpec) -> ModelDescription:
        """Start the workers and ask one for the model it loaded: the driver never builds a model."""
        self._start(spec)
        errors = []
        for worker in self._workers:
            try:
                return ModelDescription.from_dict(ray.get(worker.handle.describe.remote()))
            except RayTaskError as exc:
                raise RuntimeError(f"a genview Ray worker could not describe its model:\n{exc}") from exc
            except RayActorError as exc:
                if getattr(exc, "actor_init_failed", False) or isinstance(exc, ActorDiedError):
                    raise RuntimeError(f"a genview Ray worker could not start (loading the model failed):\n{exc}") from exc
                errors.append(str(exc))  # unreachable for now: ask the next one
        raise RuntimeError("no genview Ray worker answered: " + "; ".join(errors))

    def run(self, plan: ShardPlan, progress: JobProgress) -> None:
        """Make every shard of the plan on Ray actors; return when all are committed."""
        try:
            if plan.shards:
                self._start(plan.spec)
                _Dispatcher(self, plan, progress, self._workers, self._options).run()
        finally:
            self.close()

    def close(self) -> None:
        """Kill this job's actors and disconnect from a Ray instance started here (idempotent).

        Also on errors and Ctrl-C: no actor may go on writing once the driver has given up.
        """
        for worker in self._workers or []:
            try:
                ray.kill(worker.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone is fine
                continue
        self._workers = None
        if self._started:
            self._started = False
            ray.shutdown()


class _Dispatcher:
    """The driver loop of one job: hand shards to free actors, stream progress, re-queue lost shards."""

    def __init__(self, backend: RayBackend, plan: ShardPlan, progress: JobProgress, workers: list[_Worker],
                 options: dict[str, Any]):
        self.backend = backend
        self.plan = plan
        self.progress = progress
        self.workers = workers
        self.options = options
        self.todo: collections.deque[int] = collections.deque(sorted(plan.shards))
        self.remaining = set(plan.shards)
        self.recheck: set[int] = set()  # re-queued shards: their lost attempt may have committed after all
        self.claimed: set[int] = set()  # shards this driver has claimed (plan.claim), kept across re-queues
        self.failures: collections.Counter[int] = collections.Counter()

    def run(self) -> None:
        """Loop until every shard is committed."""
        stalled_since = time.monotonic()
        while self.remaining:
            self._send_probes()
            self._hand_out()
            waiting = {}
            for worker in self.workers:
                if worker.state == "busy":
                    waiting[worker.stream] = worker
                elif worker.probe is not None:
                    waiting[worker.probe] = worker
            ready: list = []
            if waiting:
                ready, rest = ray.wait(list(waiting), num_returns=1, timeout=self.backend.poll_seconds)
                if ready and rest:
                    ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            else:
                time.sleep(self.backend.poll_seconds)
            for ref in ready:
                worker = waiting[ref]
                if worker.state == "busy":
                    self._on_stream(worker)
                else:
                    self._on_probe(worker)
            for worker in self.workers:
                if worker.parked is not None and _attempt_is_over(worker):
                    self._requeue(worker.parked, f"worker {worker.index}'s old process is gone")
                    worker.parked = None
            if any(w.state in ("idle", "busy") for w in self.workers):
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > 60:
                logger.warning(
                    "genview: no live worker for 60 s; waiting for Ray to (re)start actors needing %s GPU + %s CPU "
                    "each (available now: %s); see `ray status`",
                    self.options["num_gpus"], self.options["num_cpus"], ray.available_resources(),
                )
                stalled_since = time.monotonic()

    # -- steps -------------------------------------------------------------------------------
    def _send_probes(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.state in ("starting", "suspect") and worker.probe is None and now >= worker.probe_at:
                worker.probe = worker.handle.info.remote()

    def _hand_out(self) -> None:
        for worker in self.workers:
            while worker.state == "idle" and self.todo:
                shard = self.todo.popleft()
                if shard in self.recheck:
                    self.recheck.discard(shard)
                    if self._finish_if_done(shard):
                        continue
                if shard not in self.claimed:
                    if self.plan.claim is not None and not self.plan.claim(shard):
                        self.remaining.discard(shard)  # another process makes it; the caller looks again later
                        continue
                    self.claimed.add(shard)
                worker.shard, worker.state, worker.attempt_info = shard, "busy", worker.info
                worker.stream = worker.handle.run.remote(shard, self.plan.shards[shard], self.plan.settings)

    def _requeue(self, shard: int, why: str) -> None:
        logger.info("shard %s re-queued: %s", layout.shard_name(shard), why)
        self.todo.appendleft(shard)
        self.recheck.add(shard)

    def _take_back(self, worker: _Worker, reason: str) -> int:
        """Detach a lost attempt from its worker; take its progress back off the bar."""
        shard = worker.shard
        self.progress.sources_done(-worker.reported[0], -worker.reported[1], -worker.reported[2], shard=shard)
        worker.reported = [0, 0, 0]
        worker.stream = worker.shard = None
        self.backend.retried.append((shard, reason))
        where = (worker.attempt_info or {}).get("ip", "?")
        logger.warning("genview: shard %s lost on worker %d (%s): %s; it will be redone", layout.shard_name(shard),
                       worker.index, where, reason.splitlines()[0][:200])
        return shard

    def _on_stream(self, worker: _Worker) -> None:
        """Handle the next message of a running shard: progress, its stats, or how it died."""
        try:
            message = ray.get(next(worker.stream))
        except StopIteration:
            raise RuntimeError(f"genview worker {worker.index} ended shard {worker.shard} without its stats") from None
        except RayActorError as exc:
            shard = self._take_back(worker, f"{type(exc).__name__}: {exc}")
            worker.state, worker.probe, worker.probe_at = "suspect", None, 0.0
            if isinstance(exc, ActorDiedError):
                self._requeue(shard, "Ray saw its worker process die")  # nothing of that attempt can still write
            else:
                worker.parked = shard  # unreachable, maybe still writing: wait until its fate is known
            return
        except RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            shard = self._take_back(worker, f"error: {cause}")
            self.failures[shard] += 1
            if self.failures[shard] >= self.backend.max_attempts:
                raise ShardFailedError(
                    f"shard {layout.shard_name(shard)} failed {self.failures[shard]} times; last error:\n{exc}"
                ) from exc
            worker.state = "idle"
            self._requeue(shard, "retrying after an error")
            return
        except RayError as exc:  # a lost result object and the like: treat the actor as unreachable
            worker.parked = self._take_back(worker, f"{type(exc).__name__}: {exc}")
            worker.state, worker.probe, worker.probe_at = "suspect", None, 0.0
            return
        if "progress" in message:
            count, views, failed = message["progress"]
            worker.reported = [worker.reported[0] + count, worker.reported[1] + views, worker.reported[2] + failed]
            self.progress.sources_done(count, views, failed, shard=worker.shard)
        elif "stats" in message:
            shard = worker.shard
            self.backend.committed_by[shard] = worker.attempt_info or {}
            self.progress.shard_done({**message["stats"], "worker": worker.attempt_info})
            self.remaining.discard(shard)
            if self.plan.after_commit is not None:
                self.plan.after_commit(shard)
            worker.reported = [0, 0, 0]
            worker.stream = worker.shard = None
            worker.state = "idle"
        else:
            raise RuntimeError(f"genview worker {worker.index} sent an unexpected message: {message!r}")

    def _on_probe(self, worker: _Worker) -> None:
        """Handle an answered info() probe: the actor is up (again), down for now, or gone for good."""
        probe, worker.probe = worker.probe, None
        try:
            info = ray.get(probe)
        except ActorDiedError as exc:
            if getattr(exc, "actor_init_failed", False):
                raise RuntimeError(f"a genview Ray worker could not start (loading the model failed):\n{exc}") from exc
            worker.state = "dead"  # killed or out of restarts: its parked shard is free to go
            if worker.parked is not None:
                self._requeue(worker.parked, f"worker {worker.index} is dead")
                worker.parked = None
            return
        except RayError:
            worker.probe_at = time.monotonic() + 1.0  # restarting or unreachable: ask again shortly
            return
        worker.info, worker.state = info, "idle"
        if worker.parked is not None:
            # The probe ran after the old attempt on this actor (same incarnation) or on a new one.
            self._requeue(worker.parked, f"worker {worker.index} answered again")
            worker.parked = None

    def _finish_if_done(self, shard: int) -> bool:
        """Count a re-queued shard whose lost attempt committed after all; True when it did."""
        store = self.plan.store
        store.refresh()  # another process wrote it, if anyone did: do not trust cached listings
        if not store.fs.exists(layout.shard_done(store.root, shard)):
            return False
        stats = store.read_stats(shard)
        self.progress.sources_done(int(stats.get("sources", 0)), int(stats.get("views", 0)), int(stats.get("failed", 0)))
        self.progress.shard_done(stats)
        self.remaining.discard(shard)
        self.backend.found_done.add(shard)
        if self.plan.after_commit is not None:
            self.plan.after_commit(shard)
        return True


def _attempt_is_over(worker: _Worker) -> bool:
    """True when Ray's actor table shows the incarnation that ran the parked shard is gone."""
    old = worker.attempt_info or worker.info
    if old is None:
        return False
    state, pid, node = _actor_incarnation(old["actor_id"])
    if state is None:
        return False
    return state != "ALIVE" or (pid, node) != (old["pid"], old["node_id"])
