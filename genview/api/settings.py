"""Service settings: GENVIEW_-prefixed environment variables over an optional TOML settings file.

Precedence (highest first): explicit keyword arguments (the `serve` flags), environment variables,
the settings file named by GENVIEW_SETTINGS_FILE (or `--settings`), the defaults below. Example file::

    database_url = "postgresql+psycopg://genview@db/genview"   # default: SQLite in base_dir
    max_running_jobs = 2

    [tokens."a-long-random-secret"]
    name = "alice"
    source_roots = ["/data/imagenet"]
    output_roots = ["/data/stores", "s3://team-bucket/stores"]
    max_jobs_in_flight = 4

GENVIEW_TOKENS="secret1,secret2" gives comma-separated tokens with the default roots and limits.
The file is TOML (read with the standard library's tomllib; on Python 3.10 install `tomli`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, TomlConfigSettingsSource

from genview.api.paths import canonical_root
from genview.pipeline.spec import default_io_threads


class TokenPolicy(BaseModel):
    """What one bearer token may do; unset fields take the service-wide defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="owner name recorded on jobs (default: a hash of the token)")
    source_roots: list[str] | None = Field(default=None, description="folders / URL prefixes this token may read")
    output_roots: list[str] | None = Field(default=None, description="folders / URL prefixes this token may write")
    max_jobs_in_flight: int | None = Field(default=None, ge=1, description="queued + running jobs allowed at once")


class Principal(BaseModel):
    """An authenticated caller with its resolved roots and limits."""

    name: str
    source_roots: list[str]
    output_roots: list[str]
    max_jobs_in_flight: int


def _split_list(value: Any) -> Any:
    """Accept a list, a JSON list, or a comma-separated string (the natural env var form)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything `genview serve` can be told; read from GENVIEW_* variables and the settings file."""

    model_config = SettingsConfigDict(env_prefix="GENVIEW_", extra="forbid", validate_default=True)

    settings_file: str | None = Field(default=None, description="TOML settings file (GENVIEW_SETTINGS_FILE)")
    host: str = Field(default="127.0.0.1", description="interface to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port")
    base_dir: str = Field(default_factory=os.getcwd, description="relative paths and default roots are taken from here")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL of the job database (default: sqlite file in base_dir)")
    jobs_dir: str | None = Field(default=None, description="per-job logs and exit files (default: base_dir/.genview-jobs)")
    tokens: Annotated[dict[str, TokenPolicy], NoDecode] = Field(default_factory=dict, description="bearer token -> policy")
    auth_disabled: bool = Field(default=False, description="no authentication; only allowed on a loopback host")
    source_roots: Annotated[list[str], NoDecode] = Field(default_factory=list, description="default read roots (default: base_dir)")
    output_roots: Annotated[list[str], NoDecode] = Field(default_factory=list, description="default write roots (default: base_dir)")
    model_roots: Annotated[list[str], NoDecode] = Field(default_factory=list, description="extra read roots for weights, for every token")
    max_jobs_in_flight: int = Field(default=4, ge=1, description="default queued + running jobs per token")
    max_running_jobs: int = Field(default=1, ge=1, description="jobs the local executor runs at once on this machine")
    http_threads: int = Field(default=16, ge=1, le=256, description="threadpool size for request handlers (database work)")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="largest request body accepted (413 above)")
    reconcile_interval: float = Field(default=2.0, gt=0, description="seconds between job state reconciliations")
    progress_cache_seconds: float = Field(default=1.0, ge=0, description="how long a store progress reading is reused")
    status_cache_seconds: float = Field(
        default=0.5, ge=0, le=10, description="how long a GET /v1/jobs/{id} reply is reused (0: never); this process's own changes show at once")
    gil_switch_interval: float = Field(
        default=0.001, gt=0, le=0.1, description="sys.setswitchinterval of the server process (seconds)")
    submit_threads: int = Field(
        default=4, ge=1, le=64, description="submissions handled at once; the rest wait without holding a request thread")
    cancel_grace_seconds: float = Field(default=10.0, ge=0, description="SIGTERM -> SIGKILL grace when cancelling")
    worker_python: str = Field(default=sys.executable, description="python that runs local workers")
    ray_address: str | None = Field(default=None, description="Ray dashboard address; when set, jobs run as Ray jobs")
    ray_runtime_env: dict[str, Any] | None = Field(default=None, description="runtime_env for submitted Ray jobs")
    ray_worker_python: str = Field(default="python", description="python on the Ray cluster that runs the worker")
    generate_args: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="extra `genview generate` flags for every job, e.g. --ray-address,auto")
    metrics_require_auth: bool = Field(
        default=True, description="require a bearer token for /metrics; set false to let anyone who reaches the port scrape it")
    # Per-job machine resources are the operator's, not the client's: defaults and caps.
    default_workers: int | None = Field(default=None, ge=1, description="Ray actors per job when a request gives none (None: in-process)")
    max_workers: int = Field(default=0, ge=0, le=4096, description="most Ray actors a request may ask for (0: requests may not ask)")
    default_io_threads: int = Field(default_factory=default_io_threads, ge=1, le=64,
                                    description="read/decode/encode threads per job when a request gives none "
                                    "(default: this machine's usable CPUs - 1, at most 4)")
    max_io_threads: int = Field(default=8, ge=1, le=64, description="most io_threads a request may ask for")
    default_threads: int | None = Field(
        default=None, ge=1, le=256, description="torch threads per worker when a request gives none (None: genview's measured default)")
    max_threads: int = Field(default=2, ge=0, le=256, description="most torch threads per worker a request may ask for")
    default_batch_size: int = Field(default=32, ge=1, le=4096, description="generator batch per job when a request gives none")
    max_batch_size: int = Field(default=256, ge=1, le=4096, description="most batch_size a request may ask for")
    replica_name: str = Field(
        default_factory=socket.gethostname, min_length=1, max_length=128,
        description="this replica's name; local workers are watched only by replicas of the same name (same machine)")
    log_level: str = Field(default="info", description="uvicorn log level")
    # Which generators jobs may name: a model name resolves to code this process imports (an entry point,
    # or package.module:Class), so the operator chooses, never the client.
    enabled_models: Annotated[list[str] | None, NoDecode] = Field(
        default=None, description="models jobs may name (names, or package.module:Class); default: genview's "
        "built-in models. GENVIEW_ENABLED_MODELS=icgan,unclip,my-plugin")
    # views x candidates x pixels per source image: k x best_of x side^2, side = the larger of view_size and
    # the side the model generates. The default admits every paper recipe (unCLIP 768 px, k=10: 5.9 M)
    # with room, and refuses k=1000 at 256 px (66 M) or view_size 4096 (168 M at k=10).
    max_cost_per_source: int = Field(
        default=50_000_000, ge=1, description="most views x candidates x pixels a job may ask per source image "
        "(k x best_of x side^2); larger jobs are refused with 422")

    @field_validator("tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                import json

                return json.loads(text)
            return {token.strip(): {} for token in text.split(",") if token.strip()}
        if isinstance(value, (list, tuple)):
            return {str(token): {} for token in value}
        return value

    @field_validator("enabled_models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        return None if value is None else _split_list(value)

    @field_validator("enabled_models")
    @classmethod
    def _resolvable_models(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            from genview.generator.registry import get_declaration

            if not value:
                raise ValueError("enabled_models is empty: enable at least one model")
            for name in value:
                get_declaration(name)  # an operator's typo fails at start-up, naming the known models
        return value

    @field_validator("source_roots", "output_roots", "model_roots", "generate_args", mode="before")
    @classmethod
    def _parse_lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("base_dir")
    @classmethod
    def _absolute_base(cls, value: str) -> str:
        return os.path.realpath(os.path.expanduser(value))

    # -- derived ---------------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        """The job database URL (a SQLite file in base_dir unless configured)."""
        return self.database_url or f"sqlite:///{os.path.join(self.base_dir, 'genview-jobs.sqlite')}"

    @property
    def resolved_jobs_dir(self) -> str:
        """Folder of per-job logs and exit-status files."""
        path = self.jobs_dir or os.path.join(self.base_dir, ".genview-jobs")
        return os.path.realpath(os.path.join(self.base_dir, os.path.expanduser(path)))

    def _roots(self, roots: list[str] | None, default: list[str]) -> list[str]:
        chosen = roots if roots is not None else (default or [self.base_dir])
        return [canonical_root(root, self.base_dir) for root in chosen]

    def principal(self, token: str, policy: TokenPolicy) -> Principal:
        """Resolve a token's policy against the service defaults."""
        name = policy.name or "token-" + hashlib.sha256(token.encode()).hexdigest()[:10]
        return Principal(
            name=name,
            source_roots=self._roots(policy.source_roots, self.source_roots),
            output_roots=self._roots(policy.output_roots, self.output_roots),
            max_jobs_in_flight=policy.max_jobs_in_flight or self.max_jobs_in_flight,
        )

    def authenticate(self, token: str | None) -> Principal | None:
        """Return the principal of a bearer token, None when it is unknown (constant-time compare)."""
        if not token:
            return None
        found = None
        for known, policy in self.tokens.items():
            # Compare against every token so timing does not reveal how many tokens share a prefix.
            if hmac.compare_digest(known.encode(), token.encode()):
                found = (known, policy)
        return self.principal(*found) if found else None

    def local_principal(self) -> Principal:
        """The principal used when auth is disabled for local use."""
        return self.principal("local", TokenPolicy(name="local"))

    def read_roots(self, principal: Principal) -> list[str]:
        """Roots a principal's weights may come from: its source roots plus the service's model roots."""
        return principal.source_roots + self.canonical_model_roots()

    def canonical_model_roots(self) -> list[str]:
        """The service's extra weights roots, canonical."""
        return [canonical_root(root, self.base_dir) for root in self.model_roots]


def load_settings(settings_file: str | None = None, **overrides: Any) -> Settings:
    """Read settings from keyword overrides, GENVIEW_* variables and the TOML settings file."""
    path = settings_file or os.environ.get("GENVIEW_SETTINGS_FILE")
    overrides = {name: value for name, value in overrides.items() if value is not None}
    if not path:
        return Settings(**overrides)
    if not Path(path).is_file():
        raise FileNotFoundError(f"settings file {path} (--settings / GENVIEW_SETTINGS_FILE) does not exist")
    toml_path = Path(path)

    class FileSettings(Settings):
        """Settings with the TOML file as the lowest-precedence source."""

        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
            return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path)

    try:
        return FileSettings(settings_file=str(path), **overrides)
    except ValueError as exc:  # TOML syntax errors and unknown or invalid keys: name the file
        raise ValueError(f"settings file {path}: {exc}") from exc
