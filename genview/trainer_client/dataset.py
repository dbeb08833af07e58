"""GenViewDataset: stream a store into a training loop, every source once per epoch, in a fresh order each epoch."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from genview.trainer_client.byte_index import BYTE_INDEX_SCHEMA, SampleReader, load_or_build, shard_byte_index
from genview.trainer_client.filters import EligibleViews, ViewFilter, eligible_views
from genview.trainer_client.policies import PairPolicy, ViewContext
from genview.trainer_client.progress import consumed_per_worker, worker_batches
from genview.trainer_client.runtime import SharedEpoch, resolve_rank
from genview.trainer_client.samples import CorruptSampleError, RawSample
from genview.trainer_client.splitting import DEFAULT_EVEN_RANKS, EVEN_RANKS, plan_positions, rank_length, worker_lengths
from genview.trainer_client.store_index import CorruptShardError, StoreFormatError, StoreIndex, shard_name

ON_CORRUPT = ("raise", "warn")
#: Version of the dict ``state_dict`` returns.
STATE_VERSION = 1


class CorruptShardWarning(UserWarning):
    """Warned (with on_corrupt="warn") when a damaged shard or sample is skipped."""


class GenViewDataset(IterableDataset):
    """An IterableDataset over a genview store (local path or s3://...): every source once per epoch.

    Each epoch, every source with a tar sample is read once across all DDP ranks and DataLoader
    workers (see ``splitting``): the store's samples are put in a new order drawn from
    (seed, epoch) -- the same on every rank -- which is cut into contiguous ranges per rank then per
    worker; each sample is read by its byte range in its shard's tar (``byte_index``). So batch
    partners (the negatives of SimCLR/MoCo-style losses) change every epoch like under a random
    permutation, and with ``even_ranks="pad"``/``"drop"`` the samples read twice or left out
    change every epoch too. By default every rank gets the same number of samples (a few are read
    twice, ``even_ranks="pad"``) so a DDP loop cannot hang at the end of an epoch;
    ``even_ranks="none"`` reads each sample exactly once.

    Build the DataLoader with ``ds.loader(batch_size, num_workers=...)`` (or pass the same
    ``batch_size`` here and to DataLoader): workers then hand out whole batches, so ``len(loader)``
    is the number of batches yielded and ``drop_last=True`` drops only the rank's one partial batch.
    ``ds.loader`` also gives the loader ``state_dict()`` / ``load_state_dict()``: resume a
    preempted epoch at its next unseen batch (torchdata's ``StatefulDataLoader`` works too: it
    calls this dataset's ``state_dict`` in each worker).

    Args:
        store: store URL/path, or an already built ``StoreIndex``.
        policy: callable (RawSample, ViewContext) -> sample; default ``PairPolicy()``.
        seed: seeds the epoch order and per-epoch view choice.
        shuffle: a new order every epoch (False: store order, for evaluation).
        shuffle_buffer: no effect (the epoch order is already a permutation of the whole store);
            accepted so code written for earlier versions keeps running.
        rank, world_size: DDP position; default from torch.distributed, else RANK/WORLD_SIZE, else (0, 1).
        even_ranks: "pad" (default) or "drop": equal counts per rank, as DDP needs ("pad" reads up to
            world_size-1 samples twice per epoch, "drop" leaves up to world_size-1 out); "none":
            every sample exactly once, ranks may differ by one sample -- for evaluation, or with
            ``torch.distributed.algorithms.join.Join`` around the DDP loop (it would hang otherwise).
        batch_size: the DataLoader's batch size, so workers split the rank's samples in whole
            batches (``loader()`` sets it); None: split per sample (each worker may end on its own
            partial batch, so with num_workers > 1 the loader may yield more batches than its len).
        on_corrupt: "raise" (default: a damaged shard stops training with an error naming it) or
            "warn" (skip a damaged shard / the damaged sample and warn).
        view_filter: quality filter over generated views (min similarity, excluded classes).
        epoch: starting epoch; change it with ``set_epoch`` before each epoch.
        allow_partial: train on a store with fewer done shards than genview.json plans (warns with
            the counts); by default such a store (an unfinished job, an interrupted pull) is refused.
        index_cache: parquet file caching the byte index (rebuilt when the shards change).
    """

    def __init__(
        self,
        store: str | StoreIndex,
        policy: Callable[[RawSample, ViewContext], Any] | None = None,
        *,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        even_ranks: str = DEFAULT_EVEN_RANKS,
        batch_size: int | None = None,
        on_corrupt: str = "raise",
        view_filter: ViewFilter | None = None,
        epoch: int = 0,
        storage_options: dict[str, Any] | None = None,
        allow_partial: bool = False,
        index_cache: str | None = None,
    ):
        super().__init__()
        self.index = store if isinstance(store, StoreIndex) else StoreIndex(store, storage_options)
        self.index.require_complete(allow_partial)
        if self.index.num_samples == 0:
            raise StoreFormatError(f"store {self.index.url} has no complete shard with samples")
        if even_ranks not in EVEN_RANKS:
            raise ValueError(f"even_ranks must be one of {', '.join(EVEN_RANKS)}, got {even_ranks!r}")
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"on_corrupt must be one of {', '.join(ON_CORRUPT)}, got {on_corrupt!r}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.policy = policy if policy is not None else PairPolicy()
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = shuffle_buffer
        self.even_ranks = even_ranks
        self.on_corrupt = on_corrupt
        self.view_filter = view_filter
        self.index_cache = index_cache
        self.eligible: EligibleViews | None = (
            eligible_views(self.index, view_filter) if view_filter is not None and view_filter.active else None
        )
        self._rank_arg = (rank, world_size)
        resolve_rank(rank, world_size)  # validate explicit values now
        self._frozen_rank: tuple[int, int] | None = None
        self._epoch = SharedEpoch(epoch)
        self._reader: SampleReader | None = None
        self._warned_uneven = False
        self._warned_unbatched = False
        self._iterated: set[tuple[int, int]] = set()
        self._warned_repeat = False
        self._resume: dict[str, Any] | None = None  # set by load_state_dict, used by the next iteration of its epoch
        self._progress: dict[str, Any] | None = None  # where this process's last iteration got

    # -- epoch and rank ----------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch before iterating; DataLoader workers, persistent or not, pick it up."""
        self._epoch.set(epoch)

    def rank_and_world(self) -> tuple[int, int]:
        """Return (rank, world_size) this dataset splits for."""
        if self._rank_arg != (None, None):
            return resolve_rank(*self._rank_arg)
        if self._frozen_rank is not None:
            return self._frozen_rank
        return resolve_rank(None, None)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # Spawned DataLoader workers have no process group: record the rank while we still know it.
        state["_frozen_rank"] = self.rank_and_world()
        return state

    def __len__(self) -> int:
        """Samples this rank yields per epoch (all its workers together); DataLoader turns it into batches."""
        rank, world = self.rank_and_world()
        return rank_length(self.index.num_samples, rank, world, self.even_ranks)

    def loader(self, batch_size: int, *, num_workers: int = 0, drop_last: bool = False, **kwargs: Any) -> "GenViewLoader":
        """Return a DataLoader over this dataset whose ``len`` is exactly the batches it yields per epoch.

        It records ``batch_size`` on the dataset, so each worker reads whole batches of the rank's
        samples, and indexes the store now, so workers start with the index; other keyword
        arguments go to DataLoader unchanged. The loader has ``state_dict()`` / ``load_state_dict()``.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if kwargs.get("in_order") is False:
            raise ValueError("in_order=False makes the batch order depend on timing; resuming needs in_order=True")
        self.batch_size = int(batch_size)
        self.reader()
        return GenViewLoader(self, batch_size=self.batch_size, num_workers=num_workers, drop_last=drop_last, **kwargs)

    # -- reading -----------------------------------------------------------------------------
    def reader(self) -> SampleReader:
        """Return the byte-index reader of the store's samples (built on first use, in store order).

        A shard that cannot be indexed raises, or with on_corrupt="warn" is left out of every epoch
        (its positions are skipped) and warned about.
        """
        if self._reader is None:
            if self.index_cache is not None and self.on_corrupt == "raise":
                table = self._raising(lambda: load_or_build(self.index, self.index_cache))
            else:  # shard by shard, so on_corrupt="warn" can leave one out (not cached then)
                tables = []
                for entry in self.index.shards:
                    try:
                        tables.append(self._raising(lambda entry=entry: shard_byte_index(self.index, entry)))
                    except CorruptShardError as exc:
                        self._corrupt(exc, f"leaving shard {shard_name(entry.shard)} out of every epoch")
                        tables.append(pa.table({"shard": pa.array([entry.shard] * entry.samples, pa.int32()),
                                                "offset": pa.array([-1] * entry.samples, pa.int64()),
                                                "length": pa.array([0] * entry.samples, pa.int64()),
                                                "source_id": pa.array([-1] * entry.samples, pa.int64())},
                                               schema=BYTE_INDEX_SCHEMA))
                table = pa.concat_tables(tables)
            self._reader = SampleReader(self.index, table)
        return self._reader

    def positions(self, worker: int = 0, num_workers: int = 1, epoch: int | None = None) -> np.ndarray:
        """Return the store positions DataLoader worker `worker` of `num_workers` reads in an epoch, in order."""
        rank, world = self.rank_and_world()
        return plan_positions(
            self.index.num_samples,
            epoch=self.epoch if epoch is None else int(epoch),
            seed=self.seed,
            shuffle=self.shuffle,
            rank=rank,
            world_size=world,
            worker=worker,
            num_workers=num_workers,
            even_ranks=self.even_ranks,
            batch_size=self.batch_size,
        )

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        started = (self.epoch, worker)
        if started in self._iterated and not self._warned_repeat and self._resume is None:
            self._warned_repeat = True
            # Same process, same epoch again (num_workers=0 or persistent workers): views repeat.
            warnings.warn(
                f"GenViewDataset iterated epoch {self.epoch} again: call set_epoch(epoch) before each epoch "
                "so the order and the generated views are drawn afresh",
                UserWarning,
                stacklevel=2,
            )
        self._iterated.add(started)
        if num_workers > 1 and self.batch_size is None and worker == 0 and not self._warned_unbatched:
            self._warned_unbatched = True
            warnings.warn(
                f"GenViewDataset read by {num_workers} DataLoader workers without batch_size: each worker ends "
                "on its own partial batch, so the loader yields more batches than len(loader); build it with "
                "ds.loader(batch_size, num_workers=...) or pass batch_size= to GenViewDataset",
                UserWarning,
                stacklevel=2,
            )
        return self.iter_partition(worker, num_workers)

    def iter_partition(self, worker: int = 0, num_workers: int = 1, epoch: int | None = None) -> Iterator[Any]:
        """Yield what DataLoader worker `worker` of `num_workers` yields (also for custom loaders and tests).

        After ``load_state_dict``, the first iteration of the saved epoch starts at the worker's
        next unread sample.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        rank, world = self.rank_and_world()
        self._warn_uneven(rank, world)
        start = self._take_resume(epoch, worker, num_workers)
        # Set now, not when the generator first runs: StatefulDataLoader saves a state before the first batch.
        self._progress = {"epoch": epoch, "worker": worker, "num_workers": num_workers, "position": start}
        return self._iterate(self.positions(worker, num_workers, epoch), epoch, self._progress)

    def _iterate(self, positions: np.ndarray, epoch: int, progress: dict[str, Any]) -> Iterator[Any]:
        reader = self.reader()
        for i in range(progress["position"], len(positions)):
            position = int(positions[i])
            progress["position"] = i + 1  # before the yield: a state saved with this sample counts it as read
            if reader.offsets[position] < 0:
                continue  # a shard left out as damaged (warned when indexed)
            try:
                sample = reader.raw(position)
            except CorruptSampleError as exc:
                self._corrupt(exc, "skipping the sample")
                continue
            except CorruptShardError as exc:
                self._corrupt(exc, "skipping the sample")
                continue
            ctx = ViewContext(epoch=epoch, seed=self.seed, k=self.index.k, eligible=self._eligible(sample.source_id))
            try:
                out = self.policy(sample, ctx)
            except CorruptSampleError as exc:
                self._corrupt(exc, f"skipping sample {sample.key}")
                continue
            yield out

    def raw_samples(self, positions: np.ndarray | None = None) -> Iterator[RawSample]:
        """Yield the parsed (still encoded) samples at these store positions (default: this rank's epoch), in order."""
        reader = self.reader()
        for position in self.positions() if positions is None else positions:
            if reader.offsets[int(position)] >= 0:
                yield reader.raw(int(position))

    # -- resuming ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return where this process's iteration got: epoch and samples read per worker (JSON-able).

        In the main process with ``num_workers=0`` this is the rank's progress; inside a DataLoader
        worker (torchdata's ``StatefulDataLoader`` asks there) it is that worker's. The loader from
        ``ds.loader`` has its own ``state_dict``, which covers all its workers.
        """
        rank, world = self.rank_and_world()
        progress = self._progress or {"epoch": self.epoch, "worker": 0, "num_workers": 1, "position": 0}
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "world_size": world,
            "shuffle": self.shuffle,
            "epoch": progress["epoch"],
            "num_workers": progress["num_workers"],
            "batch_size": self.batch_size,
            "positions": {int(progress["worker"]): int(progress["position"])},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``: set its epoch; its next iteration starts at each worker's next unread sample.

        Load it before building the DataLoader's iterator (before ``for batch in loader``).
        A state of another seed, world size or shuffle setting is refused (its order would differ).
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"not a GenViewDataset state (version {state.get('version')!r}, expected {STATE_VERSION})")
        _, world = self.rank_and_world()
        for name, ours in (("seed", self.seed), ("world_size", world), ("shuffle", self.shuffle)):
            if state[name] != ours:
                raise ValueError(f"state was saved with {name}={state[name]!r}, this dataset has {name}={ours!r}: "
                                 "its epoch order would differ, so resuming would replay or skip samples")
        self.set_epoch(int(state["epoch"]))
        self._resume = {"epoch": int(state["epoch"]), "num_workers": int(state["num_workers"]),
                        "positions": {int(w): int(p) for w, p in state["positions"].items()}}

    def _take_resume(self, epoch: int, worker: int, num_workers: int) -> int:
        """Return where a worker starts this epoch (0 unless a loaded state says otherwise); use the state once."""
        resume = self._resume
        if resume is None or resume["epoch"] != epoch:
            return 0
        if resume["num_workers"] != num_workers:
            raise ValueError(f"state was saved with num_workers={resume['num_workers']}, the loader has "
                             f"{num_workers}: resume with the same num_workers")
        start = resume["positions"].get(worker, 0)
        resume["positions"].pop(worker, None)
        if not resume["positions"]:
            self._resume = None
        return start

    # -- helpers -----------------------------------------------------------------------------
    def _raising(self, build: Callable[[], Any]) -> Any:
        try:
            return build()
        except CorruptShardError as exc:
            if self.on_corrupt == "raise":
                raise type(exc)(f"{exc} (pass on_corrupt='warn' to skip damaged data)") from None
            raise

    def _eligible(self, source_id: int) -> tuple[int, ...] | None:
        return None if self.eligible is None else self.eligible.views(source_id)

    def _corrupt(self, exc: Exception, action: str) -> None:
        if self.on_corrupt == "raise":
            raise type(exc)(f"{exc} (pass on_corrupt='warn' to skip damaged data)") from None
        warnings.warn(f"{exc}; {action}", CorruptShardWarning, stacklevel=3)

    def _warn_uneven(self, rank: int, world: int) -> None:
        total = self.index.num_samples
        if world > 1 and self.even_ranks == "none" and total % world and not self._warned_uneven:
            self._warned_uneven = True
            warnings.warn(
                f"{total} samples over {world} ranks: ranks get {total // world} or {total // world + 1} "
                "samples (even_ranks='none'); a DDP loop needs torch.distributed.algorithms.join.Join to not "
                "hang, or use even_ranks='pad' (the default) or 'drop' so every rank runs the same number of steps",
                UserWarning,
                stacklevel=3,
            )


class GenViewLoader(DataLoader):
    """The DataLoader ``GenViewDataset.loader`` builds: exact ``len``, and ``state_dict`` to resume mid-epoch.

    It counts the batches it has yielded this epoch; ``state_dict()`` turns that count into each
    worker's next unread sample (``progress``). Save it with the model (in Lightning it is saved
    in the checkpoint for you: Lightning stores the state of a train dataloader that has
    ``state_dict``/``load_state_dict``), and after a restart call ``load_state_dict`` before
    iterating: the epoch continues at its next unseen batch on every rank and worker, nothing replayed.
    """

    dataset: GenViewDataset

    def __init__(self, dataset: GenViewDataset, **kwargs: Any):
        super().__init__(dataset, **kwargs)
        self._yielded = 0  # batches yielded since this iteration (or the resume) started
        self._already: list[int] | None = None  # per-worker batches handed out before a resume
        self._iter_epoch: int | None = None

    def _worker_batches(self) -> list[int]:
        workers = max(1, self.num_workers)
        lengths = worker_lengths(len(self.dataset), workers, self.dataset.batch_size)
        return worker_batches(lengths, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[Any]:
        epoch = self.dataset.epoch
        resumed = self._already if self.dataset._resume is not None and self.dataset._resume["epoch"] == epoch else None
        iterator = super().__iter__()  # workers start here, each with the resume state
        if self.dataset._resume is not None and self.num_workers > 0:
            self.dataset._resume = None  # the workers hold it now; the next epoch starts fresh
        self._already, self._yielded, self._iter_epoch = resumed, 0, epoch
        return self._count(iterator)

    def _count(self, iterator: Iterator[Any]) -> Iterator[Any]:
        for batch in iterator:
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Return this rank's progress in the epoch: the same dict on every rank (save it from rank 0 alone)."""
        workers = max(1, self.num_workers)
        batches = self._worker_batches()
        already = self._already or [0] * workers
        epoch = self.dataset.epoch if self._iter_epoch is None else self._iter_epoch
        done = consumed_per_worker(batches, already, self._yielded) if self._iter_epoch is not None else already
        state = self.dataset.state_dict()
        lengths = worker_lengths(len(self.dataset), workers, self.dataset.batch_size)
        state.update(epoch=epoch, num_workers=workers, batch_size=self.batch_size, drop_last=self.drop_last,
                     worker_batches=done,
                     positions={w: min(done[w] * self.batch_size, lengths[w]) for w in range(workers)})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()`` (call before iterating): the epoch continues at its next unseen batch."""
        workers = max(1, self.num_workers)
        if int(state.get("num_workers", -1)) != workers or state.get("batch_size") != self.batch_size:
            raise ValueError(
                f"state was saved by a loader with num_workers={state.get('num_workers')}, "
                f"batch_size={state.get('batch_size')}; this one has num_workers={workers}, batch_size={self.batch_size}: "
                "resume with the same settings"
            )
        self.dataset.load_state_dict(state)
        # This rank's own cut (equal to the saver's under even_ranks pad/drop): positions from the batch counts.
        done = [int(n) for n in state["worker_batches"]]
        lengths = worker_lengths(len(self.dataset), workers, self.dataset.batch_size)
        self.dataset._resume["positions"] = {w: min(done[w] * self.batch_size, lengths[w]) for w in range(workers)}
        self._already, self._yielded, self._iter_epoch = done, 0, None
