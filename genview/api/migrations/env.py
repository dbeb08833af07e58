"""Alembic environment: runs on the connection genview.api.migrate hands over (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from genview.api.db import Base
from genview.api.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
