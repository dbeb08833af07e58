"""`genview quality --workers N / --ray-address A`: the per-shard feature extraction on Ray actors.

Each actor loads the networks once and measures whole shards, handed out as actors free up
(ray.util.ActorPool). A shard's extraction is idempotent (its features and marker are written
atomically, the marker last), so a retried shard, even one run twice, leaves one whole result.
The per-class tables are then built on the driver, from the stored features.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable

try:
    import ray
    from ray.util import ActorPool
except ImportError as _exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError("--ray-address / --workers need Ray; install it with: pip install 'genview[ray]'") from _exc

from genview.datastore.store import Store
from genview.pipeline.ray_backend import LOCAL_NODE_IP


class QualityWorker:
    """A Ray actor: loads the quality networks once, then extracts whole shards."""

    def __init__(self, spec: dict[str, Any]):
        from genview.quality.run import QualitySpec, load_networks

        self.spec = QualitySpec(**spec)
        self.store = Store(self.spec.store)
        self.networks, self.identity = load_networks(self.spec, self.store.spec)

    def run(self, shard: int) -> dict[str, Any]:
        """Extract one shard's features (idempotent); return its done marker plus who made it."""
        from genview.quality.extract import extract_shard

        marker = extract_shard(self.store, shard, self.networks)
        return {**marker, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    def identity_of(self) -> dict[str, Any]:
        """Return the identity (weights digests) of the networks this actor loaded."""
        return self.identity


def extract_on_ray(
    spec: Any, shards: list[int], identity: dict[str, Any], on_marker: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """Extract `shards` on Ray actors (spec.workers of them, or one per alive node); return their markers."""
    started = False
    if not ray.is_initialized():
        common = dict(logging_level=logging.WARNING, log_to_driver=False)
        if spec.ray_address:
            ray.init(address=spec.ray_address, **common)
        else:
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, spec.workers), include_dashboard=False,
                     _node_ip_address=LOCAL_NODE_IP, **common)
        started = True
    actors = []
    try:
        count = spec.workers or max(1, sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1))
        gpu = 1 if str(spec.device).startswith("cuda") else 0
        options = dict(num_cpus=1, num_gpus=gpu, max_restarts=1, max_task_retries=1, scheduling_strategy="SPREAD")
        actor_class = ray.remote(QualityWorker)
        payload = dataclasses.asdict(spec)
        actors = [actor_class.options(**options).remote(payload) for _ in range(min(count, len(shards)))]
        # Every actor must have loaded the very networks the driver checked (same files on every node).
        for got in ray.get([a.identity_of.remote() for a in actors]):
            if got != identity:
                raise ValueError("a Ray worker loaded different quality networks than the driver: the weights paths "
                                 "must hold the same files on every node")
        markers = []
        for marker in ActorPool(actors).map_unordered(lambda actor, shard: actor.run.remote(shard), shards):
            markers.append(marker)
            on_marker(marker)
        return markers
    finally:
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone is fine
                continue
        if started:
            ray.shutdown()
