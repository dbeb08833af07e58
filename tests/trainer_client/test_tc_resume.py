"""Resuming mid-epoch: the next unseen batch on every rank and worker, nothing replayed, nothing skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from torchvision import transforms as T

from genview.trainer_client import GenViewDataset, SinglePolicy
from tc_store_factory import build_store

TENSOR = T.PILToTensor()
SCRIPT = Path(__file__).with_name("ddp_resume_script.py")
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create")


def dataset(store, **kwargs):
    return GenViewDataset(store.url, SinglePolicy(p=0.5, transform=TENSOR), seed=2, epoch=1, **kwargs)


def clean_epoch(store, world: int = 1, epoch: int = 1, seed: int = 2) -> Counter:
    """The source ids one uninterrupted epoch reads over all ranks (from the plan, no decoding)."""
    seen: Counter = Counter()
    for rank in range(world):
        ds = GenViewDataset(store.url, SinglePolicy(p=0.5, transform=TENSOR), seed=seed, epoch=epoch,
                            rank=rank, world_size=world)
        seen.update(int(ds.reader().source_ids[p]) for p in ds.positions())
    return seen


def ids(batches) -> list[int]:
    return [int(i) for batch in batches for i in batch["source_id"]]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_resumes_at_the_next_unseen_batch(store, num_workers):
    first = dataset(store).loader(4, num_workers=num_workers)
    iterator = iter(first)
    before = [next(iterator) for _ in range(3)]
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON (or torch.save) round trip
    del iterator

    second = dataset(store).loader(4, num_workers=num_workers)
    second.load_state_dict(state)
    after = list(second)
    assert len(before) + len(after) == len(second)  # 29 samples, batch 4: 8 batches in all
    assert Counter(ids(before) + ids(after)) == clean_epoch(store)
    # Resumed twice: the count continues from where the first resume started.
    third_loader = dataset(store).loader(4, num_workers=num_workers)
    third_loader.load_state_dict(state)
    iterator = iter(third_loader)
    middle = [next(iterator) for _ in range(2)]
    again = json.loads(json.dumps(third_loader.state_dict()))
    del iterator
    fourth = dataset(store).loader(4, num_workers=num_workers)
    fourth.load_state_dict(again)
    assert Counter(ids(before) + ids(middle) + ids(list(fourth))) == clean_epoch(store)


def test_the_next_epoch_after_a_resumed_one_is_whole(store):
    loader = dataset(store).loader(4, num_workers=2)
    iterator = iter(loader)
    next(iterator)
    state = loader.state_dict()
    del iterator
    resumed = dataset(store).loader(4, num_workers=2)
    resumed.load_state_dict(state)
    list(resumed)
    resumed.dataset.set_epoch(2)
    assert Counter(ids(resumed)) == clean_epoch(store, epoch=2)


def test_state_of_another_setup_is_refused(store):
    loader = dataset(store).loader(4, num_workers=2)
    state = loader.state_dict()
    with pytest.raises(ValueError, match="num_workers=2"):
        dataset(store).loader(4, num_workers=1).load_state_dict(state)
    other_seed = GenViewDataset(store.url, SinglePolicy(p=0.5, transform=TENSOR), seed=3).loader(4, num_workers=2)
    with pytest.raises(ValueError, match="seed=2"):
        other_seed.load_state_dict(state)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_torchdata_stateful_dataloader_resumes_through_the_dataset_state(store, num_workers):
    from torchdata.stateful_dataloader import StatefulDataLoader

    first = StatefulDataLoader(dataset(store, batch_size=4), batch_size=4, num_workers=num_workers)
    iterator = iter(first)
    before = [next(iterator) for _ in range(3)]
    state = first.state_dict()
    del iterator
    second = StatefulDataLoader(dataset(store, batch_size=4), batch_size=4, num_workers=num_workers)
    second.load_state_dict(state)
    after = list(second)
    assert Counter(ids(before) + ids(after)) == clean_epoch(store)


def torchrun(store: str, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), store, str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (torchrun starts its ranks in their own process groups)."""
    import psutil

    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    for process in tree:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(tree, timeout=30)


def logged(out: Path, phase: str, rank: int) -> list[dict]:
    path = out / f"rank{rank}.{phase}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_killed_torchrun_resumes_without_replaying_or_skipping(tmp_path):
    import torch

    store = build_store(tmp_path / "store", shard_sizes=(9, 7, 11, 6, 8), k=2, failed_in=(1,))  # 41 samples
    out = tmp_path / "out"
    out.mkdir()
    run = torchrun(store.url, out, "--step-sleep", "0.4")
    checkpoint = out / "checkpoint.pt"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and run.poll() is None:
            if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["steps"] >= 3:
                break
            time.sleep(0.1)
        assert run.poll() is None, f"the run ended before it was killed:\n{run.communicate()[1][-3000:]}"
        kill_tree(run.pid)  # the whole torchrun: agent, both ranks, their loader workers
    finally:
        if run.poll() is None:
            kill_tree(run.pid)
        run.communicate(timeout=60)
    steps = torch.load(checkpoint, weights_only=False)["steps"]
    assert 3 <= steps < 7  # mid-epoch: 41 samples, 21 per rank, batch 3 -> 7 steps
    assert not (out / "rank0.run.done").exists()

    resume = torchrun(store.url, out, "--resume")
    stdout, stderr = resume.communicate(timeout=240)
    assert resume.returncode == 0, f"resume failed:\n{stdout[-2000:]}\n{stderr[-5000:]}"

    before = [i for rank in range(2) for entry in logged(out, "run", rank) if entry["step"] < steps for i in entry["ids"]]
    after_logs = [logged(out, "resume", rank) for rank in range(2)]
    after = [i for entries in after_logs for entry in entries for i in entry["ids"]]
    assert [len(entries) for entries in after_logs] == [7 - steps] * 2  # equal steps on both ranks
    assert [entries[0]["step"] for entries in after_logs] == [steps] * 2
    # Together one clean epoch: every source once, the one "pad" sample twice, no replay, no gap.
    assert Counter(before + after) == clean_epoch(store, world=2, seed=1)


class Preempted(RuntimeError):
    """Stands in for a preemption in the middle of an epoch."""


def test_lightning_checkpoint_holds_the_loader_state_and_resumes_mid_epoch(store, tmp_path):
    pl = pytest.importorskip("pytorch_lightning")  # installed with lightly
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint
    from torch import nn

    class Module(pl.LightningModule):
        def __init__(self, stop_after: int | None):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))
            self.stop_after, self.seen = stop_after, []

        def train_dataloader(self):  # the loader ds.loader builds: Lightning saves its state_dict itself
            ds = GenViewDataset(store.url, SinglePolicy(p=0.5, transform=T.Compose([T.Resize(8), T.ToTensor()])), seed=2)
            return ds.loader(3, num_workers=2)

        def training_step(self, batch, batch_idx):
            self.seen.append([int(i) for i in batch["source_id"]])
            if len(self.seen) == self.stop_after:
                raise Preempted
            return nn.functional.cross_entropy(self.net(batch["image"]), batch["label_index"].clamp(min=0))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    quiet = dict(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    first = Module(stop_after=6)
    saver = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1)
    with pytest.raises(Preempted):
        pl.Trainer(callbacks=[saver], **quiet).fit(first)
    checkpoint_path = tmp_path / "epoch=0-step=4.ckpt"
    state = torch.load(checkpoint_path, weights_only=False)["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert state["epoch"] == 0 and sum(state["worker_batches"]) == 4  # the state is in the checkpoint dict

    second = Module(stop_after=None)
    pl.Trainer(enable_checkpointing=False, **quiet).fit(second, ckpt_path=str(checkpoint_path))
    seen = [i for batch in first.seen[:4] + second.seen for i in batch]
    assert len(first.seen[:4]) + len(second.seen) == 10  # 29 samples, batch 3: 10 steps
    assert Counter(seen) == clean_epoch(store, epoch=0)
