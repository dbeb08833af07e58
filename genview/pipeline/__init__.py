"""The shard function (decode -> generate -> write) and the backends that run it.

Exports resolve lazily (PEP 562) so that the job spec can be used without importing torch: the web
service validates specs but never runs a model, and `genview --help` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genview._lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
