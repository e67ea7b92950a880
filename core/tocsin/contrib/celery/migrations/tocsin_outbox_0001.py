"""tocsin: the outbox table of deferred receivers (tocsin_outbox).

Revision ID: tocsin_outbox_0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

from tocsin.contrib.celery.migrations import create_outbox, drop_outbox

revision = "tocsin_outbox_0001"
down_revision = None
branch_labels = ("tocsin_outbox",)
depends_on = None


def upgrade() -> None:
    create_outbox()


def downgrade() -> None:
    drop_outbox()
