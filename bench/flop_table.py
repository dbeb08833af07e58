"""Print the README's cost table: FLOPs per view and views/s per GPU for IC-GAN and Stable unCLIP.

    python bench/flop_table.py

Counted on meta tensors (no weights, no GPU): full-size architectures, seconds on a CPU.
"""

from __future__ import annotations

import argparse

from genview.generator.cost import DEFAULT_K, flop_table


def main() -> None:
    """Print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="views per source (the encoder's share)")
    args = parser.parse_args()
    print(flop_table(k=args.k), end="")


if __name__ == "__main__":
    main()
