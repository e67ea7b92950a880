"""The outbox table, ``tocsin_outbox``, as a Django model.

The columns and the index are those of :data:`tocsin.contrib.celery.outbox.outbox_table`
(what the Alembic revision makes), times included: naive UTC, a ``timestamp`` without
time zone on PostgreSQL, so a SQLAlchemy relay and a Django one can share the table.
tocsin reads and writes it; your code need not.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import models

__all__ = ["OutboxMessage", "UTCDateTimeField"]

#: How SQLAlchemy's DateTime writes a time on SQLite; the same here, so that the text
#: of two times compares as the times do.
SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value


class UTCDateTimeField(models.DateTimeField):  # type: ignore[type-arg]
    """A time in naive UTC, whatever ``USE_TZ`` says: the column is ``timestamp``
    (without time zone) on PostgreSQL; values read are naive, aware ones written are
    turned to UTC first."""

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "postgresql":
            return "timestamp"
        return super().db_type(connection)

    def get_prep_value(self, value: Any) -> Any:
        return _naive_utc(value)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        if isinstance(value, datetime.datetime) and connection.vendor == "sqlite":
            return value.strftime(SQLITE_FORMAT)
        return value

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return _naive_utc(value)


class OutboxMessage(models.Model):
    """One deferred send made with ``outbox=True``, until the broker has taken it."""

    id: models.AutoField[int, int] = models.AutoField(primary_key=True)
    message_id: models.CharField[str, str] = models.CharField(max_length=64, unique=True)
    task_name: models.CharField[str, str] = models.CharField(max_length=200)
    envelope: models.TextField[str, str] = models.TextField()
    options: models.TextField[str, str] = models.TextField()
    created = UTCDateTimeField()
    attempts: models.IntegerField[int, int] = models.IntegerField(default=0)
    next_attempt_at = UTCDateTimeField()
    claimed_by: models.CharField[str | None, str | None] = models.CharField(
        max_length=200, null=True
    )
    claimed_until = UTCDateTimeField(null=True)
    published_at = UTCDateTimeField(null=True)

    class Meta:
        db_table = "tocsin_outbox"
        indexes = (
            models.Index(
                fields=["published_at", "next_attempt_at"], name="ix_tocsin_outbox_pending"
            ),
        )
        verbose_name = "outbox message"

    def __str__(self) -> str:
        return f"outbox message {self.message_id}"
