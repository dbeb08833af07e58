"""Stream a genview store into PyTorch training with the seeds' view policies (read-only).

Quick start (SimCLR pairs, seed 000 defaults: view 2 generated with p = 1, then the standard augmentation)::

    from genview.trainer_client import GenViewDataset, PairPolicy

    ds = GenViewDataset("s3://bucket/store", PairPolicy(p=1.0, preset="simclr", crop_size=224))
    loader = ds.loader(batch_size=256, num_workers=8)  # len(loader) == batches it yields
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for batch in loader:
            x1, x2 = batch["view1"], batch["view2"]

Under DDP every rank gets the same number of batches by default (``even_ranks="pad"`` reads up to
world_size-1 samples twice per epoch); ``even_ranks="none"`` reads every sample exactly once, for
evaluation or a loop wrapped in ``torch.distributed.algorithms.join.Join``.
Call ``set_epoch`` every epoch (it reaches persistent workers too): shard order, shuffling and the
generated view of each source are drawn from (seed, epoch). In Lightning, do it in
``on_train_epoch_start``: ``self.trainer.train_dataloader.dataset.set_epoch(self.current_epoch)``.
For ``__getitem__`` access (DistributedSampler, the DA IC-GAN fixed-count batch sampler) use
``GenViewMapDataset``; ``pull_store`` copies a remote store to local disk and verifies it.
"""

from genview.trainer_client.augment import AugmentParams, build_transform, preset, preset_params
from genview.trainer_client.dataset import CorruptShardWarning, GenViewDataset, GenViewLoader
from genview.trainer_client.filters import ViewFilter, classes_above_fid
from genview.trainer_client.losses import disentanglement_loss_dino, disentanglement_loss_simclr, nt_xent_loss
from genview.trainer_client.map_dataset import GenViewMapDataset
from genview.trainer_client.policies import (
    MultiViewPolicy,
    PairPolicy,
    SinglePolicy,
    SoloLearnOutput,
    TripletPolicy,
    ViewContext,
    lightly_policy,
    per_view_transforms,
    sololearn_policy,
)
from genview.trainer_client.pull import PullReport, StoreVerificationError, pull_store
from genview.trainer_client.samples import CorruptSampleError, RawSample
from genview.trainer_client.sampler import FixedCountBatchSampler, ViewRequest
from genview.trainer_client.store_index import (
    CorruptShardError,
    PartialStoreError,
    PartialStoreWarning,
    StoreFormatError,
    StoreIndex,
)

__all__ = [
    "AugmentParams",
    "CorruptSampleError",
    "CorruptShardError",
    "CorruptShardWarning",
    "FixedCountBatchSampler",
    "GenViewDataset",
    "GenViewLoader",
    "GenViewMapDataset",
    "MultiViewPolicy",
    "PairPolicy",
    "PartialStoreError",
    "PartialStoreWarning",
    "PullReport",
    "RawSample",
    "SinglePolicy",
    "SoloLearnOutput",
    "StoreFormatError",
    "StoreIndex",
    "StoreVerificationError",
    "TripletPolicy",
    "ViewContext",
    "ViewFilter",
    "ViewRequest",
    "build_transform",
    "classes_above_fid",
    "disentanglement_loss_dino",
    "disentanglement_loss_simclr",
    "nt_xent_loss",
    "lightly_policy",
    "per_view_transforms",
    "preset",
    "preset_params",
    "pull_store",
    "sololearn_policy",
]
