"""The job list's keyset pages: one index that serves `WHERE owner = ? ORDER BY created_at DESC, public_id DESC`
and the cursor comparison after it, so the last page of 100 k jobs costs what the first does."""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEX = "ix_genview_jobs_owner_created_id"


def upgrade() -> None:
    """Add the composite (owner, created_at, public_id) index."""
    op.create_index(INDEX, "genview_jobs", ["owner", "created_at", "public_id"])


def downgrade() -> None:
    """Drop it (pages fall back to the owner index and a sort)."""
    op.drop_index(INDEX, "genview_jobs")
