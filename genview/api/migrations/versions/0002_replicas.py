"""Several replicas on one database: per-owner job ids, the claiming replica, the worker's weight roots;
indexes for the queries every submit makes."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add public_id (filled from id), weight_roots and claimed_by."""
    op.add_column("genview_jobs", sa.Column("public_id", sa.String(64), nullable=True))
    op.add_column("genview_jobs", sa.Column("weight_roots", sa.JSON(), nullable=True))
    op.add_column("genview_jobs", sa.Column("claimed_by", sa.String(128), nullable=True))
    op.add_column("genview_jobs", sa.Column("request_digest", sa.String(64), nullable=True))
    op.execute("UPDATE genview_jobs SET public_id = id")
    with op.batch_alter_table("genview_jobs") as batch:
        batch.alter_column("public_id", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_genview_jobs_owner_public_id", ["owner", "public_id"])
    op.create_index("ix_genview_jobs_claimed_by", "genview_jobs", ["claimed_by"])
    op.create_index("ix_genview_jobs_owner_state", "genview_jobs", ["owner", "state"])
    op.create_index("ix_genview_jobs_out_state", "genview_jobs", ["out", "state"])


def downgrade() -> None:
    """Remove the replica columns (client ids fall back to being global)."""
    op.drop_index("ix_genview_jobs_out_state", "genview_jobs")
    op.drop_index("ix_genview_jobs_owner_state", "genview_jobs")
    op.drop_index("ix_genview_jobs_claimed_by", "genview_jobs")
    with op.batch_alter_table("genview_jobs") as batch:
        batch.drop_constraint("uq_genview_jobs_owner_public_id", type_="unique")
        batch.drop_column("request_digest")
        batch.drop_column("claimed_by")
        batch.drop_column("weight_roots")
        batch.drop_column("public_id")
