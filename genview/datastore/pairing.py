"""Secondary-source choice for interpolated views: random over the dataset, or across groups of a column.

Gen-SIS pairs each primary image with a random secondary from the whole dataset (ImageNet),
or with one from another whole-slide image (pathology): `pair_across="slide"`. The choice is a
pure function of (seed, the source table), so reruns and every worker agree. No torch here:
the datastore package must not import it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
#: Domain tag mixed into the seed so pairing never correlates with the per-view noise seeds.
_PAIRING_TAG = np.uint64(0x70616972696E6721)  # "pairing!"


class PairingError(ValueError):
    """Raised when secondaries cannot be chosen (too few sources, missing or single-group column)."""


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Return the splitmix64 finaliser of uint64 values (a fast, well-mixed, portable hash)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def _uniforms(seed: int, source_ids: np.ndarray) -> np.ndarray:
    """Return one uniform in [0, 1) per source id, a function of (seed, id) only."""
    with np.errstate(over="ignore"):
        base = _splitmix64(np.asarray([int(seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) ^ _PAIRING_TAG)
        h = _splitmix64(source_ids.astype(np.uint64) ^ base)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)  # 53 bits -> [0, 1)


def _pick(u: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Return floor(u * count) as int64, kept below count against float rounding."""
    return np.minimum((u * count).astype(np.int64), count - 1)


def choose_secondaries(sources: pa.Table, seed: int, pair_across: str | None = None) -> np.ndarray:
    """Return, per row of `sources`, the source_id of its secondary: never itself, seeded, deterministic.

    With `pair_across=COLUMN` the secondary comes from a row whose value in COLUMN differs
    (e.g. another slide); otherwise it is uniform over all other rows.
    """
    if "source_id" not in sources.column_names:
        raise PairingError("the sources table has no source_id column")
    ids = sources.column("source_id").to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(ids)
    if n < 2:
        raise PairingError(f"interpolation needs at least 2 sources to pair, the dataset has {n}")
    u = _uniforms(seed, ids)
    if pair_across is None:
        # Uniform over the n-1 other rows: draw in [0, n-1) and skip over the row itself.
        rows = np.arange(n, dtype=np.int64)
        pick = _pick(u, np.full(n, n - 1, dtype=np.int64))
        pick = pick + (pick >= rows)
        return ids[pick]
    return ids[_pick_across(sources, pair_across, u)]


def _pick_across(sources: pa.Table, column: str, u: np.ndarray) -> np.ndarray:
    """Return, per row, the row index of a secondary whose `column` value differs from the row's own."""
    if column not in sources.column_names:
        raise PairingError(
            f"--pair-across column {column!r} is not in the sources; available columns: "
            f"{', '.join(sources.column_names)}"
        )
    values = sources.column(column)
    nulls = values.null_count
    if nulls:
        raise PairingError(
            f"--pair-across column {column!r} is empty for {nulls} of {len(values)} sources; "
            "every source needs a group to pair across"
        )
    # Group codes in first-seen order: a pure function of the table, like everything here.
    encoded = values.combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    groups = len(encoded.dictionary)
    if groups < 2:
        raise PairingError(
            f"--pair-across column {column!r} has a single value ({encoded.dictionary[0].as_py()!r}) for all "
            "sources; pairing across it needs at least two groups"
        )
    n = len(codes)
    # Lay the rows out grouped: the other-group rows of group g are positions [0, start_g) and
    # [end_g, n) of that layout, so a draw in [0, n - size_g) skips the own block in one step.
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    own_size, own_start = sizes[codes], starts[codes]
    pick = _pick(u, n - own_size)
    pick = pick + np.where(pick >= own_start, own_size, 0)
    return order[pick]


def pairing_description(seed: int, pair_across: str | None) -> dict:
    """Return the JSON-able record of how secondaries were chosen (for the store's spec params)."""
    return {"pairing": "across" if pair_across else "random", "pair_across": pair_across, "pairing_seed": int(seed)}
