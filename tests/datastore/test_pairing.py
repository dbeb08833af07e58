"""Secondary-source pairing for interpolated views: never itself, seeded, --pair-across groups."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from genview.datastore.pairing import PairingError, choose_secondaries, pairing_description


def _table(n: int, slides: list[str] | None = None, first_id: int = 100) -> pa.Table:
    columns = {
        "source_id": pa.array(range(first_id, first_id + n), pa.int64()),
        "uri": pa.array([f"/data/img_{i}.jpg" for i in range(n)]),
        "label": pa.array([None] * n, pa.string()),
    }
    if slides is not None:
        columns["slide"] = pa.array(slides)
    return pa.table(columns)


def test_random_pairing_never_pairs_an_image_with_itself_and_returns_source_ids():
    table = _table(50)
    ids = table.column("source_id").to_numpy()
    for seed in range(20):
        sec = choose_secondaries(table, seed)
        assert sec.dtype == np.int64 and sec.shape == (50,)
        assert np.isin(sec, ids).all()
        assert (sec != ids).all()
    # Two sources: each must take the other.
    assert choose_secondaries(_table(2), 0).tolist() == [101, 100]


def test_random_pairing_is_deterministic_and_spreads_over_the_dataset():
    table = _table(2000)
    a, b = choose_secondaries(table, 7), choose_secondaries(table, 7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, choose_secondaries(table, 8))
    # Uniform over the others: 2000 draws over 2000 ids hit ~63% of them, and no id dominates.
    assert len(np.unique(a)) > 1000
    assert np.bincount(a - 100).max() < 12


def test_pair_across_takes_the_secondary_from_another_group():
    slides = [f"slide{i % 3}" for i in range(30)] + ["slide9"]
    table = _table(31, slides)
    group = dict(zip(table.column("source_id").to_pylist(), slides))
    for seed in range(10):
        sec = choose_secondaries(table, seed, pair_across="slide")
        for sid, other in zip(table.column("source_id").to_pylist(), sec.tolist()):
            assert group[other] != group[sid]
    # Secondaries of slide0 sources come from both other big slides across seeds, never slide0.
    reached = set()
    for seed in range(10):
        sec = choose_secondaries(table, seed, pair_across="slide")
        reached |= {group[s] for s, g in zip(sec.tolist(), slides) if g == "slide0"}
    assert {"slide1", "slide2"} <= reached and "slide0" not in reached


def test_pair_across_works_on_chunked_tables():
    part = _table(6, ["a", "a", "b", "b", "c", "c"])
    table = pa.concat_tables([part, _table(6, ["c", "c", "a", "a", "b", "b"], first_id=200)])
    assert table.column("slide").num_chunks == 2
    groups = dict(zip(table.column("source_id").to_pylist(), table.column("slide").to_pylist()))
    sec = choose_secondaries(table, 0, pair_across="slide")
    assert all(groups[s] != groups[p] for p, s in zip(table.column("source_id").to_pylist(), sec.tolist()))


def test_pairing_errors_are_clear():
    with pytest.raises(PairingError, match=r"--pair-across column 'slide' is not in the sources.*source_id, uri, label"):
        choose_secondaries(_table(5), 0, pair_across="slide")
    with pytest.raises(PairingError, match="single value"):
        choose_secondaries(_table(4, ["s"] * 4), 0, pair_across="slide")
    with pytest.raises(PairingError, match="empty for 1 of 3"):
        choose_secondaries(_table(3, ["a", None, "b"]), 0, pair_across="slide")
    with pytest.raises(PairingError, match="at least 2 sources"):
        choose_secondaries(_table(1), 0)


def test_pairing_description_is_json_able():
    assert pairing_description(3, "slide") == {"pairing": "across", "pair_across": "slide", "pairing_seed": 3}
    assert pairing_description(3, None)["pairing"] == "random"


def test_pairing_does_not_import_torch():
    code = "import sys, genview.datastore.pairing; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
