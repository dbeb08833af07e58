"""Shared fixtures: small image sets and tiny random-weight models written in the published format."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # live_process.py, shared by the server tests

# Two cores shared with other work: one intra-op thread keeps timings stable and tests fast.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """An ImageFolder tree of 3 classes x 4 synthetic images."""
    from genview.synthetic_data import make_image_folder

    root = tmp_path_factory.mktemp("images")
    make_image_folder(root, classes=3, per_class=4, size=64, seed=1)
    return root


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """Return a function model name -> folder with a tiny random model in its published layout."""
    from genview.cli.models import init_random_model

    made: dict[str, str] = {}

    def get(name: str = "icgan") -> str:
        if name not in made:
            out = tmp_path_factory.mktemp(f"weights-{name}")
            init_random_model(name, "tiny", str(out), seed=0)
            made[name] = str(out)
        return made[name]

    return get
