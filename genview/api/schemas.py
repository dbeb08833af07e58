"""Request and response bodies of the HTTP API; the job spec is the CLI's GenerateSpec."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genview.generator.registry import builtin_model_names
from genview.pipeline.spec import GenerateSpec

#: The models jobs may name: set once per service process from Settings.enabled_models (create_app);
#: None until then, which means genview's own models (its core and its own entry points).
_ENABLED_MODELS: list[str] | None = None


def enable_models(names: list[str] | None) -> None:
    """Set the models this process's job service accepts (None: genview's built-in models)."""
    global _ENABLED_MODELS
    _ENABLED_MODELS = sorted(names) if names is not None else None


def enabled_models() -> list[str]:
    """The model names a job may name on this service."""
    return list(_ENABLED_MODELS) if _ENABLED_MODELS is not None else builtin_model_names()


#: Client-chosen job ids and idempotency keys: safe as a folder name, never '.' or '..'.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


#: Deepest nesting a job body may have (params values are scalars: body -> params -> value is 2).
MAX_BODY_DEPTH = 4


def _has_surrogate(text: str) -> bool:
    """True for text that is not valid Unicode (JSON allows lone \\ud800 escapes; UTF-8 cannot encode them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def malformed_json(value: Any, where: str = "body", depth: int = 0) -> str | None:
    """Why a decoded JSON body is unusable (too deeply nested, a lone surrogate), naming where; None if fine."""
    if depth > MAX_BODY_DEPTH:
        return f"{where}: nested more than {MAX_BODY_DEPTH} levels deep"
    if isinstance(value, str):
        return f"{where}: text with a lone UTF-16 surrogate (not valid Unicode)" if _has_surrogate(value) else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and _has_surrogate(key):
            return f"{where}: a key with a lone UTF-16 surrogate (not valid Unicode)"
        name = key if where == "body" else f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"
        problem = malformed_json(item, name, depth + 1)
        if problem is not None:
            return problem
    return None


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
    """A job submission: the `genview generate` spec (same fields, same checks) plus an optional job id.

    ``recipe`` names a paper recipe (GET-able as `genview recipes list`); it fills the fields left out.
    """

    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        # No coercion: "3" is not a k, true is not a seed (FastAPI hands over the decoded JSON).
        strict=True,
        allow_inf_nan=False,  # NaN/Infinity are valid Python JSON but never a valid setting
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

    @model_validator(mode="before")
    @classmethod
    def _well_formed(cls, data: Any) -> Any:
        # Before any field is looked at: pydantic cannot even build an error message that quotes a
        # lone surrogate, and nothing here needs more than a few levels of nesting.
        problem = malformed_json(data)
        if problem is not None:
            raise ValueError(problem)
        return data

    @field_validator("model", mode="before")
    @classmethod
    def _enabled_model(cls, value: Any) -> Any:
        # Before the name is resolved: resolving a package.module:Class imports code, and an HTTP client
        # must not choose what this process imports. Only the operator's enabled models get that far.
        enabled = enabled_models()
        if isinstance(value, str) and value not in enabled:
            raise ValueError(f"model {value!r} is not enabled on this service; enabled models: {', '.join(enabled)}")
        return value

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
    """A generator jobs may name on this service."""

    name: str = Field(description="the value for a job's `model` field")
    summary: str = Field(default="", description="what the model is")
    params: list[dict[str, Any]] = Field(default_factory=list, description="its params: name, type, default, bounds")


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
