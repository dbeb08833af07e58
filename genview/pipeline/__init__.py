"""The shard function (decode -> generate -> write) and the backends that run it."""

from genview.pipeline.runner import JobSummary, generate, load_generator, summarize
from genview.pipeline.spec import GenerateSpec

__all__ = ["GenerateSpec", "JobSummary", "generate", "load_generator", "summarize"]
