"""Job records in a real database: SQLite file by default, PostgreSQL (psycopg 3) for several replicas."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, Text, UniqueConstraint, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    """Timezone-aware now in UTC."""
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """Store UTC datetimes; always hand back aware ones (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of the job tables."""


class Job(Base):
    """One generation job: its spec, owner, state and where its worker runs."""

    __tablename__ = "genview_jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_genview_jobs_owner_key"),
        # Client-chosen ids are per owner: one token's ids say nothing about another's.
        UniqueConstraint("owner", "public_id", name="uq_genview_jobs_owner_public_id"),
        # Every submit counts the owner's jobs in flight and looks for a job writing the same store.
        Index("ix_genview_jobs_owner_state", "owner", "state"),
        Index("ix_genview_jobs_out_state", "out", "state"),
        # The job list pages newest first by keyset (created_at, public_id) within an owner (migration 0003).
        Index("ix_genview_jobs_owner_created_id", "owner", "created_at", "public_id"),
    )

    #: The service's own id (job folders, Ray submission ids); never chosen by a client.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The id the owner sees and uses in URLs: theirs if they chose one, else the same as `id`.
    public_id: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(128), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_digest: Mapped[str] = mapped_column(String(64))
    #: Hash of the request body as submitted: an identical resubmission is answered without resolving it again.
    request_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    out: Mapped[str] = mapped_column(Text)
    read_roots: Mapped[list[str]] = mapped_column(JSON)
    #: Where weights and path params may come from (read roots + model roots), for the worker's own check.
    weight_roots: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    executor: Mapped[str] = mapped_column(String(16))
    #: The replica that started the job (its local workers are watched only by replicas of that name).
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pid_start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    job_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets status reads run while the dispatcher writes; busy_timeout waits instead of failing."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def normalize_url(url: str) -> str:
    """postgresql:// and postgres:// mean the psycopg 3 driver (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str) -> Engine:
    """Create the engine for a database URL; SQLite gets thread-safe connections and WAL."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20, max_overflow=20)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # connect_timeout: libpq waits forever for a host that drops packets; requests must get their 503.
        connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args=connect_args)
    return engine


def init_db(engine: Engine) -> None:
    """Bring the job database to the current schema with the packaged Alembic migrations."""
    from genview.api.migrate import upgrade

    upgrade(engine)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (responses are built after committing)."""
    return sessionmaker(engine, expire_on_commit=False)


def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session and close it afterwards (the FastAPI dependency and the dispatcher use it)."""
    with factory() as session:
        yield session
