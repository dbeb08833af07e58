"""Executors start, watch and stop job workers; the web process never runs a model itself.

LocalProcessExecutor: a `python -m genview.api.worker` process per job on this machine, in its own
session (so it outlives a service restart), with stdout/stderr in JOBS_DIR/ID/worker.log and its
exit status in JOBS_DIR/ID/exit.json. RayJobsExecutor: the same worker command submitted as a Ray
job through the Ray Jobs API when GENVIEW_RAY_ADDRESS is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from typing import Any, Protocol, Sequence

from genview.pipeline.spec import GenerateSpec

log = logging.getLogger("genview.api")

LOG_NAME = "worker.log"
STATUS_NAME = "exit.json"
#: Environment a worker must not inherit: it needs no credentials of the service.
_PRIVATE_ENV = ("GENVIEW_TOKENS", "GENVIEW_TOKEN", "GENVIEW_SETTINGS_FILE", "GENVIEW_DATABASE_URL")
#: Two start times within this many seconds are the same process (guards against pid reuse).
_START_TIME_TOLERANCE = 1.0


@dataclasses.dataclass
class StartInfo:
    """What an executor records about a started worker."""

    pid: int | None = None
    pid_start_time: float | None = None
    external_id: str | None = None
    job_dir: str | None = None


@dataclasses.dataclass
class WorkerStatus:
    """A worker as seen now: still running, or ended with an exit code (None = unknown) and error."""

    running: bool
    exit_code: int | None = None
    error: str | None = None


class JobRef(Protocol):
    """The job record fields executors read (the ORM row satisfies it)."""

    id: str
    pid: int | None
    pid_start_time: float | None
    external_id: str | None
    job_dir: str | None


class Executor(Protocol):
    """Starts, polls, cancels and reads the logs of job workers."""

    name: str

    def start(self, job_id: str, spec: GenerateSpec, read_roots: Sequence[str],
              weight_roots: Sequence[str] = ()) -> StartInfo:
        """Start the worker of a job; return how to find it again."""

    def poll(self, job: JobRef) -> WorkerStatus:
        """Return whether the job's worker still runs, and how it ended if not."""

    def cancel(self, job: JobRef, grace: float) -> None:
        """Stop the job's worker: politely first, by force after `grace` seconds."""

    def logs(self, job: JobRef, tail: int) -> str:
        """Return the last `tail` lines of the job's log."""


def worker_command(
    python: str,
    spec: GenerateSpec,
    read_roots: Sequence[str],
    base_dir: str,
    status_file: str | None,
    generate_args: Sequence[str] = (),
    weight_roots: Sequence[str] = (),
) -> list[str]:
    """The argv of a job worker (`python -m genview.api.worker ...`).

    The models the service enables when the worker starts go with it: a job queued while its model
    was enabled does not run once the operator has disabled it.
    """
    from genview.api.schemas import enabled_models

    cmd = [python, "-m", "genview.api.worker", "--spec-json", spec.model_dump_json(), "--base-dir", base_dir]
    for name in enabled_models():
        cmd.append(f"--enabled-model={name}")
    for root in read_roots:
        cmd.append(f"--read-root={root}")
    for root in weight_roots:
        cmd.append(f"--weight-root={root}")
    if status_file:
        cmd.append(f"--status-file={status_file}")
    for arg in generate_args:
        cmd.append(f"--generate-arg={arg}")
    return cmd


def _describe_exit(code: int) -> str:
    """Human form of a Popen return code (negative = killed by a signal)."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def tail_text(path: str, lines: int, block: int = 65536) -> str:
    """Return the last `lines` lines of a text file without reading all of it."""
    if lines <= 0 or not os.path.exists(path):
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        data = b""
        position = end
        while position > 0 and data.count(b"\n") <= lines:
            step = min(block, position)
            position -= step
            fh.seek(position)
            data = fh.read(step) + data
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:]) + ("\n" if text.endswith("\n") else "")


def process_alive(pid: int | None, start_time: float | None) -> bool:
    """True when `pid` runs and is the process that started at `start_time` (not a reused pid)."""
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if start_time is not None and abs(proc.create_time() - start_time) > _START_TIME_TOLERANCE:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def sweep_process_group(pgid: int | None) -> int:
    """SIGKILL what is left of a dead worker's process group; return how many processes were left.

    A worker leads its own session and process group (pgid == its pid). Killed with SIGKILL, it cannot
    stop what it started: a local Ray instance's DashboardAgent and RuntimeEnvAgent (children of the
    raylet, in the worker's group) outlive it by a minute while they try to report the raylet's death
    to a GCS that died too. Only when no process has the pid `pgid` any more: a live one would be a
    reused pid, and its group is not ours.
    """
    if not pgid:
        return 0
    import psutil

    if psutil.pid_exists(pgid):
        return 0
    left = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                left.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    if left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    return len(left)


class LocalProcessExecutor:
    """Run each job as a worker process on this machine (the embedded default)."""

    name = "local"

    def __init__(self, jobs_dir: str, base_dir: str, python: str, env: dict[str, str] | None = None,
                 generate_args: Sequence[str] = ()):
        self.jobs_dir = jobs_dir
        self.base_dir = base_dir
        self.python = python
        self.env = env
        self.generate_args = list(generate_args)
        self._children: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def job_dir(self, job_id: str) -> str:
        """Folder holding a job's log and exit status."""
        return os.path.join(self.jobs_dir, job_id)

    def start(self, job_id: str, spec: GenerateSpec, read_roots: Sequence[str],
              weight_roots: Sequence[str] = ()) -> StartInfo:
        """Start the worker in a new session with its output in the job's log file."""
        import psutil

        job_dir = self.job_dir(job_id)
        os.makedirs(job_dir, exist_ok=True)
        status_file = os.path.join(job_dir, STATUS_NAME)
        if os.path.exists(status_file):
            os.remove(status_file)
        env = dict(self.env if self.env is not None else os.environ)
        for name in _PRIVATE_ENV:
            env.pop(name, None)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = worker_command(self.python, spec, read_roots, self.base_dir, status_file, self.generate_args, weight_roots)
        with open(os.path.join(job_dir, LOG_NAME), "ab") as log:
            # A new session: the worker is not killed with the service, and killpg reaches all it spawns.
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.base_dir, env=env, start_new_session=True, close_fds=True)
        with self._lock:
            self._children[job_id] = popen
        start_time = psutil.Process(popen.pid).create_time()
        with open(os.path.join(job_dir, "worker.json"), "w", encoding="utf-8") as fh:
            json.dump({"pid": popen.pid, "start_time": start_time, "cmd": cmd}, fh)
        return StartInfo(pid=popen.pid, pid_start_time=start_time, job_dir=job_dir)

    def _read_status(self, job: JobRef) -> dict[str, Any] | None:
        if not job.job_dir:
            return None
        try:
            with open(os.path.join(job.job_dir, STATUS_NAME), encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def poll(self, job: JobRef) -> WorkerStatus:
        """Reap our own children; for workers of an earlier service process, check pid + start time."""
        with self._lock:
            popen = self._children.get(job.id)
        returncode = None
        if popen is not None:
            returncode = popen.poll()
            if returncode is None:
                return WorkerStatus(running=True)
            with self._lock:
                self._children.pop(job.id, None)
        elif process_alive(job.pid, job.pid_start_time):
            return WorkerStatus(running=True)
        left = sweep_process_group(job.pid)
        if left:
            log.warning("job %s: its worker is gone; killed %d process(es) it left behind (e.g. Ray's agents)", job.id, left)
        status = self._read_status(job)
        if status is not None:
            return WorkerStatus(running=False, exit_code=status.get("exit_code"), error=status.get("error"))
        if returncode is not None:
            return WorkerStatus(running=False, exit_code=returncode,
                                error=f"worker ended by {_describe_exit(returncode)} before writing its exit status")
        return WorkerStatus(running=False, exit_code=None,
                            error="worker process is gone and left no exit status (killed, or the machine restarted)")

    def _wait_gone(self, job: JobRef, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        with self._lock:
            popen = self._children.get(job.id)
        while True:
            if popen is not None:
                if popen.poll() is not None:
                    return True
            elif not process_alive(job.pid, job.pid_start_time):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def cancel(self, job: JobRef, grace: float) -> None:
        """SIGTERM to the worker's process group, SIGKILL after `grace` seconds."""
        if not process_alive(job.pid, job.pid_start_time):
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(job.pid, sig)  # the worker leads its own session: pgid == pid
            except ProcessLookupError:
                return
            if self._wait_gone(job, wait):
                return

    def logs(self, job: JobRef, tail: int) -> str:
        """Last lines of the worker's log file."""
        if not job.job_dir:
            return ""
        return tail_text(os.path.join(job.job_dir, LOG_NAME), tail)


class RayJobsExecutor:
    """Run each job as a Ray job (`JobSubmissionClient.submit_job`) on the cluster at `address`."""

    name = "ray"
    _RUNNING = ("PENDING", "RUNNING")

    def __init__(self, address: str, base_dir: str, runtime_env: dict[str, Any] | None = None,
                 generate_args: Sequence[str] = (), python: str = "python", client: Any = None):
        if client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise RuntimeError(
                    "GENVIEW_RAY_ADDRESS is set but ray is not installed here: pip install 'genview[ray]'"
                ) from None
            client = JobSubmissionClient(address)
        self.client = client
        self.address = address
        self.base_dir = base_dir
        self.runtime_env = runtime_env
        self.generate_args = list(generate_args)
        self.python = python

    def start(self, job_id: str, spec: GenerateSpec, read_roots: Sequence[str],
              weight_roots: Sequence[str] = ()) -> StartInfo:
        """Submit the worker command as a Ray job named genview-ID."""
        submission_id = f"genview-{job_id}"
        entrypoint = shlex.join(worker_command(self.python, spec, read_roots, self.base_dir, None, self.generate_args,
                                               weight_roots))
        returned = self.client.submit_job(
            entrypoint=entrypoint,
            submission_id=submission_id,
            runtime_env=self.runtime_env,
            metadata={"genview_job_id": job_id},
        )
        return StartInfo(external_id=returned or submission_id)

    @staticmethod
    def _value(status: Any) -> str:
        return str(getattr(status, "value", status)).upper()

    def poll(self, job: JobRef) -> WorkerStatus:
        """Map the Ray job status; an unreachable cluster counts as still running (it is retried)."""
        try:
            status = self._value(self.client.get_job_status(job.external_id))
        except (ConnectionError, TimeoutError, RuntimeError):
            return WorkerStatus(running=True)
        if status in self._RUNNING:
            return WorkerStatus(running=True)
        if status == "SUCCEEDED":
            return WorkerStatus(running=False, exit_code=0)
        info = self.client.get_job_info(job.external_id)
        message = getattr(info, "message", None)
        code = getattr(info, "driver_exit_code", None)
        if status == "STOPPED":
            return WorkerStatus(running=False, exit_code=code if code is not None else 130,
                                error=message or "Ray job stopped")
        # Ray's message already quotes the end of the driver log (where the CLI prints its error).
        error = message or self.logs(job, 10).strip() or f"Ray job {status}"
        return WorkerStatus(running=False, exit_code=code if code is not None else 1, error=error[-4000:])

    def cancel(self, job: JobRef, grace: float) -> None:
        """Ask Ray to stop the job and wait for it to leave PENDING/RUNNING."""
        self.client.stop_job(job.external_id)
        deadline = time.monotonic() + max(grace, 1.0)
        while time.monotonic() < deadline:
            if self._value(self.client.get_job_status(job.external_id)) not in self._RUNNING:
                return
            time.sleep(0.2)

    def logs(self, job: JobRef, tail: int) -> str:
        """Last lines of the Ray job's driver log."""
        if not job.external_id:
            return ""
        text = self.client.get_job_logs(job.external_id) or ""
        return "\n".join(text.splitlines()[-tail:]) + ("\n" if text.endswith("\n") and tail > 0 else "")


def make_executor(settings: Any) -> Executor:
    """The executor the settings ask for: Ray when ray_address is set, else local processes."""
    if settings.ray_address:
        return RayJobsExecutor(settings.ray_address, settings.base_dir, settings.ray_runtime_env,
                               settings.generate_args, python=settings.ray_worker_python)
    return LocalProcessExecutor(settings.resolved_jobs_dir, settings.base_dir, settings.worker_python,
                                generate_args=settings.generate_args)
