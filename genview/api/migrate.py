"""Run the packaged Alembic migrations on the job database (at `genview serve` start, or `genview db upgrade`)."""

from __future__ import annotations

import contextlib
import logging
import os

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

#: Our own version table, so that genview can share a database with other Alembic users.
VERSION_TABLE = "genview_alembic_version"
#: The revision of the schema that create_all made before migrations existed.
BASELINE = "0001"
#: Any constant: replicas starting together take this PostgreSQL advisory lock to migrate one at a time.
_ADVISORY_LOCK_ID = 0x67656E76  # "genv"


def _config(connection: Connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", os.path.join(os.path.dirname(__file__), "migrations"))
    config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def head_revision() -> str:
    """The newest revision this genview ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(os.path.join(os.path.dirname(__file__), "migrations")).get_current_head()


@contextlib.contextmanager
def _alembic_quiet():
    """Alembic logs every step at INFO (7 lines at each `genview serve` start): keep them for --log-level debug only."""
    logger = logging.getLogger("alembic")
    level = logger.level
    if not logger.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the job database to `revision`; a pre-migration database is first stamped as the baseline."""
    with _alembic_quiet():
        _upgrade(engine, revision)


def _upgrade(engine: Engine, revision: str) -> None:
    from alembic import command  # inside the quiet block: importing alembic logs its plugins at INFO

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends: a second replica waits, then finds nothing to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
        tables = set(inspect(connection).get_table_names())
        config = _config(connection)
        if "genview_jobs" in tables and VERSION_TABLE not in tables:
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)
