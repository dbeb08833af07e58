"""Request and response bodies of the HTTP API; the job spec is the CLI's GenerateSpec."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from genview.pipeline.spec import GenerateSpec

#: Client-chosen job ids and idempotency keys: safe as a folder name, never '.' or '..'.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class JobState(str, enum.Enum):
    """Life cycle of a job: queued -> running -> succeeded | failed | cancelled."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


IN_FLIGHT = (JobState.queued.value, JobState.running.value)
TERMINAL = (JobState.succeeded.value, JobState.failed.value, JobState.cancelled.value)


class JobCreate(GenerateSpec):
    """A job submission: the `genview generate` spec (same fields, same checks) plus an optional job id."""

    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {"source": "images/train", "model": "icgan", "weights": "weights/icgan", "k": 4, "seed": 0,
                 "out": "stores/train-icgan-k4", "shard_size": 1000, "params": {"truncation": 0.8}}
            ]
        },
    )

    id: str | None = Field(
        default=None, pattern=JOB_ID_PATTERN,
        description="client-chosen job id; submitting the same id twice makes one job (like Idempotency-Key)",
    )
    source: str = Field(min_length=1, max_length=4096, description="image folder, list file (.txt/.csv/.parquet) or URL, under your source roots")
    out: str | None = Field(
        default=None, min_length=1, max_length=4096,
        description="store folder or URL under your output roots (default: SOURCE-MODEL-kK in your first output root)",
    )
    weights: str = Field(min_length=1, max_length=4096, description="checkpoint directory of the model, under your source or the model roots")
    ray_address: None = Field(default=None, description="not accepted: the service decides where jobs run")

    @field_validator("ray_address", mode="before")
    @classmethod
    def _no_ray_address(cls, value: Any) -> None:
        # A client-chosen cluster would receive the images: where jobs run is the service's setting.
        if value is not None:
            raise ValueError("where jobs run is set by the service (GENVIEW_RAY_ADDRESS / generate_args), not per job")
        return None

    def to_spec(self, **resolved: Any) -> GenerateSpec:
        """Return the GenerateSpec the worker runs, with paths replaced by their resolved forms."""
        data = self.model_dump(exclude={"id"})
        data.update(resolved)
        return GenerateSpec.model_validate(data)


class Progress(BaseModel):
    """How far a job's store is, read from the store itself (done markers and sources.parquet)."""

    sources_total: int | None = Field(description="sources planned (None until the store is planned)")
    sources_done: int = Field(description="sources in done shards (ok + failed), including earlier runs")
    shards_total: int | None = Field(description="shards planned")
    shards_done: int = Field(description="shards with a done marker")
    views_written: int = Field(description="views in done shards")
    failed_sources: int = Field(description="sources that could not be decoded")
    views_per_second: float | None = Field(description="throughput over shards finished by this job")
    eta_seconds: float | None = Field(description="estimated seconds to finish at the current rate")
    fraction: float | None = Field(description="sources_done / sources_total")
    sources_in_running_shards: int = Field(default=0, description="sources done inside shards still running (included in sources_done)")
    views_in_running_shards: int = Field(default=0, description="views made inside shards still running (included in views_written)")
    live_updated_at: float | None = Field(default=None, description="epoch seconds of the worker's last in-shard report, while shards run")


class Execution(BaseModel):
    """Where the job's worker runs."""

    executor: str = Field(description="local (a worker process on the service host) or ray (a Ray job)")
    pid: int | None = Field(default=None, description="worker process id (local executor)")
    external_id: str | None = Field(default=None, description="Ray submission id (ray executor)")
    exit_code: int | None = Field(default=None, description="worker exit code once it ended")


class JobPublic(BaseModel):
    """A job as the API shows it."""

    model_config = ConfigDict(protected_namespaces=())

    id: str
    owner: str
    state: JobState
    spec: dict[str, Any] = Field(description="the GenerateSpec being run (paths resolved)")
    idempotency_key: str | None = None
    cancel_requested: bool = False
    error: str | None = Field(default=None, description="why the job failed")
    progress: Progress
    execution: Execution
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class JobList(BaseModel):
    """One page of jobs, newest first."""

    items: list[JobPublic]
    total: int = Field(description="jobs matching the filter")
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page, None on the last page")


class ModelInfo(BaseModel):
    """A registered generator."""

    name: str = Field(description="the value for a job's `model` field")


class ModelList(BaseModel):
    """The registered generators."""

    models: list[ModelInfo]


class Health(BaseModel):
    """Liveness and readiness of the service."""

    status: str
    version: str
    database: str
    executor: str


class ErrorBody(BaseModel):
    """An error with a human-readable reason."""

    detail: str
