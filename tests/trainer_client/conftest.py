"""Fixtures: small stores written straight from the store-format contract (no genview writer)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

# The suite runs with --import-mode=importlib (no sys.path changes): make the store factory,
# which the tests and the example test import, importable from this folder.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from tc_store_factory import build_store  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """7 shards of 5, 1, 8, 3, 6, 2, 4 samples (29), K=3, one failed source in shards 2 and 5."""
    return build_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def interp_store(tmp_path_factory):
    """A format v1 store made 'with --interpolate': KEY.sec.png, alphas (0.2, 0.5, 0.8: the secondary's weight), secondary_id."""
    return build_store(tmp_path_factory.mktemp("interp"), shard_sizes=(4, 3), k=3, failed_in=(), interpolate=True,
                       format_version=1)


@pytest.fixture(scope="session")
def interp_store_primary_weights(tmp_path_factory):
    """The same interpolation store in the current format: per-view primary_weights (Gen-SIS alpha)."""
    return build_store(tmp_path_factory.mktemp("interp-pw"), shard_sizes=(4, 3), k=3, failed_in=(),
                       interpolate=True, primary_weights=True)


@pytest.fixture
def store_copy(store, tmp_path):
    """A private copy of `store` a test may damage."""
    dest = tmp_path / "copy"
    shutil.copytree(store.root, dest)
    return store.__class__(**{**store.__dict__, "root": dest})
