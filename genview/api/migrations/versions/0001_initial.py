"""The job table as created before migrations existed (create_all of genview 0.1)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from genview.api.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create genview_jobs."""
    op.create_table(
        "genview_jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_digest", sa.String(64), nullable=False),
        sa.Column("out", sa.Text(), nullable=False),
        sa.Column("read_roots", sa.JSON(), nullable=False),
        sa.Column("executor", sa.String(16), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("pid_start_time", sa.Float(), nullable=True),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("job_dir", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_genview_jobs_owner_key"),
    )
    op.create_index("ix_genview_jobs_owner", "genview_jobs", ["owner"])
    op.create_index("ix_genview_jobs_state", "genview_jobs", ["state"])
    op.create_index("ix_genview_jobs_created_at", "genview_jobs", ["created_at"])


def downgrade() -> None:
    """Drop genview_jobs."""
    op.drop_table("genview_jobs")
