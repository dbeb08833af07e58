"""GenViewDataset: stream a store's shards into a training loop, every source once per epoch."""

from __future__ import annotations

import random
import warnings
from typing import Any, Callable, Iterator

import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from genview.trainer_client.filters import EligibleViews, ViewFilter, eligible_views
from genview.trainer_client.policies import PairPolicy, ViewContext
from genview.trainer_client.runtime import SharedEpoch, resolve_rank
from genview.trainer_client.samples import CorruptSampleError, RawSample, iter_shard_range, parse_sample
from genview.trainer_client.soft_labels import LABEL_MODES, SoftLabels
from genview.trainer_client.splitting import DEFAULT_EVEN_RANKS, EVEN_RANKS, Segment, plan_partition, rank_length
from genview.trainer_client.store_index import CorruptShardError, StoreFormatError, StoreIndex, shard_name

ON_CORRUPT = ("raise", "warn")


class CorruptShardWarning(UserWarning):
    """Warned (with on_corrupt="warn") when a damaged shard or sample is skipped."""


class GenViewDataset(IterableDataset):
    """An IterableDataset over a genview store (local path or s3://...), built on webdataset's tar reader.

    Each epoch, every source with a tar sample is read once across all DDP ranks and DataLoader
    workers (see ``splitting``): shard order is a permutation seeded by (seed, epoch), the epoch's
    sample sequence is cut into contiguous ranges per rank then per worker, and each worker
    shuffles its stream through a buffer seeded by (seed, epoch, rank, worker). By default every
    rank gets the same number of samples (a few are read twice, ``even_ranks="pad"``) so a DDP
    loop cannot hang at the end of an epoch; ``even_ranks="none"`` reads each sample exactly once.

    Build the DataLoader with ``ds.loader(batch_size, num_workers=...)`` (or pass the same
    ``batch_size`` here and to DataLoader): workers then hand out whole batches, so ``len(loader)``
    is the number of batches yielded and ``drop_last=True`` drops only the rank's one partial batch.

    Args:
        store: store URL/path, or an already built ``StoreIndex``.
        policy: callable (RawSample, ViewContext) -> sample; default ``PairPolicy()``.
        seed: seeds shard order, shuffle buffer and per-epoch view choice.
        shuffle: shuffle shard order and samples (False: store order, for evaluation).
        shuffle_buffer: samples held by each worker's shuffle buffer (encoded bytes, not tensors).
        rank, world_size: DDP position; default from torch.distributed, else RANK/WORLD_SIZE, else (0, 1).
        even_ranks: "pad" (default) or "drop": equal counts per rank, as DDP needs ("pad" reads up to
            world_size-1 samples twice per epoch, "drop" leaves up to world_size-1 out); "none":
            every sample exactly once, ranks may differ by one sample -- for evaluation, or with
            ``torch.distributed.algorithms.join.Join`` around the DDP loop (it would hang otherwise).
        batch_size: the DataLoader's batch size, so workers split the rank's samples in whole
            batches (``loader()`` sets it); None: split per sample (each worker may end on its own
            partial batch, so with num_workers > 1 the loader may yield more batches than its len).
        on_corrupt: "raise" (default: a damaged shard stops training with an error naming it) or
            "warn" (skip the rest of a damaged shard / the damaged sample and warn).
        view_filter: quality filter over generated views (min similarity, excluded classes).
        epoch: starting epoch; change it with ``set_epoch`` before each epoch.
        labels: "hard" (the sample's ``label_index`` only) or "soft": also ``soft_label``, DA IC-GAN's Eq. 2
            label of generated images from the store's quality tables (see ``soft_labels``).
    """

    def __init__(
        self,
        store: str | StoreIndex,
        policy: Callable[[RawSample, ViewContext], Any] | None = None,
        *,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 256,
        rank: int | None = None,
        world_size: int | None = None,
        even_ranks: str = DEFAULT_EVEN_RANKS,
        batch_size: int | None = None,
        on_corrupt: str = "raise",
        view_filter: ViewFilter | None = None,
        epoch: int = 0,
        storage_options: dict[str, Any] | None = None,
        labels: str = "hard",
    ):
        super().__init__()
        self.index = store if isinstance(store, StoreIndex) else StoreIndex(store, storage_options)
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
        self.shuffle_buffer = int(shuffle_buffer)
        self.even_ranks = even_ranks
        self.on_corrupt = on_corrupt
        self.view_filter = view_filter
        self.eligible: EligibleViews | None = (
            eligible_views(self.index, view_filter) if view_filter is not None and view_filter.active else None
        )
        self._rank_arg = (rank, world_size)
        resolve_rank(rank, world_size)  # validate explicit values now
        self._frozen_rank: tuple[int, int] | None = None
        if labels not in LABEL_MODES:
            raise ValueError(f"labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
        self.soft_labels = SoftLabels(self.index) if labels == "soft" else None
        self._epoch = SharedEpoch(epoch)
        self._warned_uneven = False
        self._warned_unbatched = False
        self._iterated: set[tuple[int, int]] = set()
        self._warned_repeat = False

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

    def loader(self, batch_size: int, *, num_workers: int = 0, drop_last: bool = False, **kwargs: Any) -> DataLoader:
        """Return a DataLoader over this dataset whose ``len`` is exactly the batches it yields per epoch.

        It records ``batch_size`` on the dataset, so each worker reads whole batches of the rank's
        samples; other keyword arguments go to DataLoader unchanged.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        return DataLoader(self, batch_size=self.batch_size, num_workers=num_workers, drop_last=drop_last, **kwargs)

    # -- iteration ---------------------------------------------------------------------------
    def partition(self, worker: int = 0, num_workers: int = 1, epoch: int | None = None) -> list[Segment]:
        """Return the shard segments DataLoader worker `worker` of `num_workers` reads in an epoch."""
        rank, world = self.rank_and_world()
        return plan_partition(
            self.index.shard_counts,
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
        if started in self._iterated and not self._warned_repeat:
            self._warned_repeat = True
            # Same process, same epoch again (num_workers=0 or persistent workers): views repeat.
            warnings.warn(
                f"GenViewDataset iterated epoch {self.epoch} again: call set_epoch(epoch) before each epoch "
                "so shard order, shuffling and the generated views are drawn afresh",
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
        """Yield what DataLoader worker `worker` of `num_workers` yields (also for custom loaders and tests)."""
        epoch = self.epoch if epoch is None else int(epoch)
        rank, world = self.rank_and_world()
        self._warn_uneven(rank, world)
        samples: Iterator[RawSample] = self.raw_samples(self.partition(worker, num_workers, epoch))
        if self.shuffle and self.shuffle_buffer > 1:
            rng = random.Random(f"genview-buffer:{self.seed}:{epoch}:{rank}:{worker}")
            samples = wds.filters.shuffle(bufsize=self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(samples)
        for sample in samples:
            ctx = ViewContext(epoch=epoch, seed=self.seed, k=self.index.k, eligible=self._eligible(sample.source_id))
            try:
                out = self.policy(sample, ctx)
            except CorruptSampleError as exc:
                self._corrupt(exc, f"skipping sample {sample.key}")
                continue
            yield out if self.soft_labels is None else self.soft_labels.attach(out, sample.source_id, sample.label_index)

    def raw_samples(self, segments: list[Segment]) -> Iterator[RawSample]:
        """Yield the parsed (still encoded) samples of these segments, in order."""
        fs, k = self.index.fs, self.index.k
        for segment in segments:
            entry = self.index.entry(segment.shard)
            try:
                for raw in iter_shard_range(fs, entry.path, entry.shard, entry.samples, k, segment.start, segment.stop):
                    try:
                        yield parse_sample(raw, entry.shard, k, self.index.has_source)
                    except CorruptSampleError as exc:
                        self._corrupt(exc, "skipping the sample")
            except CorruptSampleError:
                raise
            except CorruptShardError as exc:
                self._corrupt(exc, f"skipping the rest of shard {shard_name(entry.shard)}")

    # -- helpers -----------------------------------------------------------------------------
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
