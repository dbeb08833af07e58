"""Run genview's CLI in a subprocess in which some packages cannot be imported, as if they were not installed.

Not a mock of genview: a meta-path finder placed first makes `import NAME` raise ModuleNotFoundError for
the blocked top-level names, the condition a user without that extra is in; everything else is real.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Sequence

BLOCKER = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, NotInstalled())
sys.argv = ["genview", *{argv!r}]
from genview.cli.main import main
raise SystemExit(main())
"""


def run_genview_without(blocked: Iterable[str], argv: Sequence[str], timeout: float = 120,
                        **kwargs) -> subprocess.CompletedProcess:
    """`genview ARGV` in a fresh interpreter where the `blocked` top-level packages are not importable."""
    code = BLOCKER.format(blocked=set(blocked), argv=list(argv))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, **kwargs)
