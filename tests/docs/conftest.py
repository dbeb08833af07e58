"""The documentation tests: runnable blocks of README.md and docs/, the strict mkdocs build, README == CI."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # markdown_blocks.py beside this file
