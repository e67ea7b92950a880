"""Alembic migrations for the outbox table, ``tocsin_outbox``.

Two ways to use them:

* Add this folder to your Alembic ``version_locations`` (``VERSIONS_DIR``); its one
  revision, ``tocsin_outbox_0001``, is a branch of its own (label ``tocsin_outbox``),
  so ``alembic upgrade tocsin_outbox@head`` (or ``heads``) creates the table.
* Or call :func:`create_outbox` / :func:`drop_outbox` from a revision of your own.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

__all__ = ["VERSIONS_DIR", "create_outbox", "drop_outbox"]

#: The folder to add to Alembic's ``version_locations``.
VERSIONS_DIR = str(Path(__file__).parent)


def create_outbox() -> None:
    """Create ``tocsin_outbox`` inside an Alembic migration (``alembic.op``)."""
    from alembic import op

    op.create_table(
        "tocsin_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64), nullable=False, unique=True),
        sa.Column("task_name", sa.String(200), nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("claimed_until", sa.DateTime, nullable=True),
        sa.Column("published_at", sa.DateTime, nullable=True),
    )
    op.create_index(
        "ix_tocsin_outbox_pending", "tocsin_outbox", ["published_at", "next_attempt_at"]
    )


def drop_outbox() -> None:
    """Drop ``tocsin_outbox`` inside an Alembic migration."""
    from alembic import op

    op.drop_index("ix_tocsin_outbox_pending", table_name="tocsin_outbox")
    op.drop_table("tocsin_outbox")
