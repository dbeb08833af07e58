"""The shard function (decode -> generate -> write) and the backends that run it.

Exports resolve lazily (PEP 562) so that the job spec can be used without importing torch: the web
service validates specs but never runs a model, and `genview --help` stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "GenerateSpec": "genview.pipeline.spec",
    "JobSummary": "genview.pipeline.runner",
    "generate": "genview.pipeline.runner",
    "load_generator": "genview.pipeline.runner",
    "summarize": "genview.pipeline.runner",
}

if TYPE_CHECKING:
    from genview.pipeline.runner import JobSummary, generate, load_generator, summarize
    from genview.pipeline.spec import GenerateSpec


def __getattr__(name: str) -> Any:
    """Import an exported name on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'genview.pipeline' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
