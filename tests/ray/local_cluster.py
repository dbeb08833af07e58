"""A real multi-node Ray cluster on one machine for the tests: `ray start --head` plus worker nodes.

Every node is its own `ray start --block` process, started in a new session; `kill_node` SIGKILLs it
and every process below it (raylet, object store, agents, and the worker processes, which Ray puts
in process groups of their own) at once, which is what a machine dying looks like to the others.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from live_process import free_port

#: Fast node-death detection (defaults take ~30 s): the GCS pings raylets every 0.5 s and gives up after 3 misses.
FAST_FAILURE_DETECTION = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
#: Each node's own ports: several nodes on one IP must not collide on Ray's fixed defaults.
NODE_PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
)


def env_for_cli() -> dict[str, str]:
    """Environment for a genview CLI subprocess in the tests: one torch thread, no model hub."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def ray_executable() -> str:
    """The `ray` CLI of this interpreter's environment."""
    path = Path(sys.executable).with_name("ray")
    return str(path) if path.exists() else "ray"


@dataclasses.dataclass
class Node:
    """One `ray start --block` process (and its process group)."""

    name: str
    proc: subprocess.Popen
    log: Path

    @property
    def alive(self) -> bool:
        """True while the node's `ray start` process runs."""
        return self.proc.poll() is None


class LocalCluster:
    """A head node without CPUs (the driver's) plus worker nodes with `cpus` CPUs each, all on 127.0.0.1."""

    def __init__(self, cpus: int = 1, object_store_bytes: int = 80_000_000, env: dict[str, str] | None = None):
        self.cpus = cpus
        self.object_store_bytes = object_store_bytes
        # Token auth off: a throwaway cluster any local driver may join, whatever ~/.ray/auth_token it
        # has (Ray caches its auth mode at import, so drivers can't be switched per test).
        self.env = {**os.environ, **FAST_FAILURE_DETECTION, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                    **(env or {})}
        # Short: Ray's unix socket paths live under it and must stay below ~107 characters.
        self.temp_dir = tempfile.mkdtemp(prefix="gvray", dir="/tmp")
        self.port = free_port()
        self.head: Node | None = None
        self.workers: list[Node] = []

    #: Loopback, but not the literal 127.0.0.1, which `ray start` replaces with the machine's routable
    #: address: every node, driver and connection of the test cluster stays on the loopback device.
    NODE_IP = "127.0.0.2"

    @property
    def address(self) -> str:
        """The GCS address drivers and nodes connect to."""
        return f"{self.NODE_IP}:{self.port}"

    def _start(self, name: str, args: list[str]) -> Node:
        log = Path(self.temp_dir) / f"{name}.log"
        ports = [arg for flag in NODE_PORT_FLAGS for arg in (flag, str(free_port()))]
        cmd = [ray_executable(), "start", "--block", f"--node-ip-address={self.NODE_IP}", "--disable-usage-stats",
               f"--object-store-memory={self.object_store_bytes}", *ports, *args]
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        return Node(name, proc, log)

    def start(self, worker_nodes: int = 2, timeout: float = 120.0) -> "LocalCluster":
        """Start the head and `worker_nodes` worker nodes; wait until all have joined."""
        self.head = self._start("head", [
            "--head", f"--port={self.port}", "--num-cpus=0", "--include-dashboard=false",
            f"--temp-dir={self.temp_dir}", f"--ray-client-server-port={free_port()}", f"--dashboard-port={free_port()}",
        ])
        self.wait_for_nodes(1, timeout)
        for _ in range(worker_nodes):
            self.add_node(timeout=timeout)
        return self

    def add_node(self, timeout: float = 120.0) -> Node:
        """Start one more worker node (one at a time: simultaneous starts race for ports)."""
        node = self._start(f"worker{len(self.workers)}", [f"--address={self.address}", f"--num-cpus={self.cpus}"])
        self.workers.append(node)
        self.wait_for_nodes(1 + sum(w.alive for w in self.workers), timeout)
        return node

    def alive_nodes(self) -> int:
        """Number of nodes the GCS reports alive (asked through a short-lived subprocess, not this process)."""
        code = (
            "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False);"
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        try:
            out = subprocess.run([sys.executable, "-c", code, self.address], capture_output=True, text=True,
                                 env=self.env, timeout=45)
        except subprocess.TimeoutExpired:
            # A driver that connects while the GCS is still starting can hang instead of failing:
            # that is "not up yet", and the caller's deadline decides when to give up.
            return 0
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0

    def wait_for_nodes(self, count: int, timeout: float) -> None:
        """Block until `count` nodes are alive; raise with the logs when they do not come up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.head is not None and not self.head.alive:
                break
            if self.alive_nodes() >= count:
                return
            time.sleep(0.5)
        logs = "\n".join(f"--- {n.name}\n{n.log.read_text()[-2000:]}" for n in [self.head, *self.workers] if n)
        raise RuntimeError(f"the local Ray cluster did not reach {count} nodes in {timeout:.0f} s\n{logs}")

    def kill_node(self, node: Node) -> None:
        """SIGKILL a whole node at once: its `ray start`, raylet, agents and every worker process on it."""
        pids = [node.proc.pid, *descendants(node.proc.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.proc.wait()

    def actor_processes(self, prefix: str) -> list[tuple[int, str, Node]]:
        """(pid, process title, node) of every worker process whose title starts with `prefix`, e.g. ray::ShardWorker."""
        table = _proc_table()
        found = []
        for node in self.workers:
            if not node.alive:
                continue
            for pid in descendants(node.proc.pid, table):
                title = table[pid][1]
                if title.startswith(prefix):
                    found.append((pid, title, node))
        return found

    def stop(self) -> None:
        """Stop every node this cluster started (only those process groups), then delete its temp dir."""
        nodes = [*self.workers, *([self.head] if self.head else [])]
        table = _proc_table()
        leftovers = [(pid, table[pid][1]) for node in nodes if node.alive for pid in descendants(node.proc.pid, table)]
        for node in nodes:
            if node.alive:
                try:
                    os.killpg(node.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for node in nodes:
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(node.proc.pid, signal.SIGKILL)  # whatever did not exit on SIGTERM
            except ProcessLookupError:
                pass
            node.proc.wait()
        table = _proc_table()
        for pid, cmdline in leftovers:  # worker processes live in their own process groups
            if table.get(pid, (0, None))[1] == cmdline:  # still that process, not a reused pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue
        table[int(entry)] = (ppid, cmdline)
    return table


def descendants(root: int, table: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """Every process below `root` in the process tree (Ray puts its workers in their own process groups)."""
    table = table if table is not None else _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found
