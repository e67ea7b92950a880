"""The transactional outbox: a deferred send written to a table in the caller's
transaction, published after the commit, and relayed later if the broker was not there.

With SQLAlchemy, ``deferred(on_commit=True, outbox=True)`` INSERTs the encoded message
(the envelope the task gets, under the ``tocsin_message_id`` it will carry) into
``tocsin_outbox`` on the connection of the sender's SQLAlchemy session, so the row
commits or rolls back with the data.  After the commit it is published at once, within
the publish timeout; a row that could not be published stays pending, and
:func:`relay_once` / :func:`run_relay` (or ``tocsin relay --database URL``) publish it
later, with exponential backoff.

Several relays may run at once: each claims a batch of rows before publishing it
(``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite, whose writers are
serialized, one atomic ``UPDATE`` of ``claimed_by``/``claimed_until``), so a row is
published once in the common case.  Delivery stays at least once: a relay that dies
after publishing and before marking the row lets its claim expire, and the row is
published again, with the same message id (the Celery task id).

The table: :func:`create_outbox_table` creates it (``metadata.create_all``), and the
Alembic revision shipped in ``tocsin/contrib/celery/migrations`` does the same for a
project migrated with Alembic (see the docs).  In a Django project, the app
:mod:`tocsin.contrib.celery.django_outbox` makes the same table with a Django migration,
and a send in a Django transaction writes it there; the pieces both share are in
``_outbox_common``.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa

from tocsin.contrib.celery._codecs import JSON
from tocsin.contrib.celery._outbox_common import (
    KEEP_PUBLISHED_SETTING,
    SENDER_CLAIM_MARGIN,
    OutboxRow,
    backoff_seconds,
    chunked,
    claim_token,
    claimed_until,
    dump_compact,
    keep_published_of,
    now,
    relay_loop,
    relay_pass,
    wait_settled,
)

__all__ = [
    "KEEP_PUBLISHED_SETTING",
    "SENDER_CLAIM_MARGIN",
    "SQLAlchemyOutbox",
    "backoff_seconds",
    "claim_token",
    "create_outbox_table",
    "keep_published_of",
    "metadata",
    "outbox_table",
    "relay_once",
    "relay_task",
    "run_relay",
    "wait_settled",
]

#: The naive UTC clock of the outbox (kept under its old name for the tests).
_now = now

metadata = sa.MetaData()

#: The outbox table; one row per deferred send made with ``outbox=True``.  The Django
#: app :mod:`tocsin.contrib.celery.django_outbox` makes the same table.
outbox_table = sa.Table(
    "tocsin_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False, unique=True),
    sa.Column("task_name", sa.String(200), nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),
    sa.Column("options", sa.Text, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime, nullable=False),
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("claimed_until", sa.DateTime, nullable=True),
    sa.Column("published_at", sa.DateTime, nullable=True),
    sa.Index("ix_tocsin_outbox_pending", "published_at", "next_attempt_at"),
)


#: The INSERT of every outboxed send, built once: building it per send cost more than
#: running it on SQLite (bench_outbox, issue 15).
_INSERT = outbox_table.insert()


def create_outbox_table(bind: Any) -> None:
    """Create ``tocsin_outbox`` (if missing) with *bind*, an engine or connection."""
    metadata.create_all(bind, tables=[outbox_table])


def insert_message(
    connection: Any,
    *,
    message_id: str,
    task_name: str,
    envelope: Mapping[str, JSON],
    options: Mapping[str, Any],
    claim_seconds: float | None,
) -> str | None:
    """INSERT one pending message on *connection* (in its transaction), claimed by the
    sender for *claim_seconds*; returns the claim token (None: *claim_seconds* was None,
    and the row is left unclaimed for the relay)."""
    at = now()
    token = claim_token("sender") if claim_seconds is not None else None
    connection.execute(
        _INSERT,
        {
            "message_id": message_id,
            "task_name": task_name,
            "envelope": dump_compact(envelope),
            "options": dump_compact(options),
            "created": at,
            "attempts": 0,
            "next_attempt_at": at,
            "claimed_by": token,
            "claimed_until": claimed_until(at, claim_seconds),
        },
    )
    return token


class SQLAlchemyOutbox:
    """The outbox table through the SQLAlchemy engine (or connection) *bind*; each
    method runs in a transaction of its own."""

    def __init__(self, bind: Any) -> None:
        self.bind = bind

    def claim(self, token: str, batch: int, claim_seconds: float) -> list[OutboxRow]:
        return _claim(self.bind, token, batch, claim_seconds)

    @property
    def key(self) -> Hashable:
        return cast(Hashable, self.bind)

    def mark_published(
        self, message_ids: Sequence[str], token: str | None, keep_published: float
    ) -> None:
        mark_published(self.bind, message_ids, token, keep_published)

    def release(self, message_id: str, token: str, *, failed: bool, backoff: float) -> None:
        release(self.bind, message_id, token, failed=failed, backoff=backoff)

    def purge_published(self, keep_published: float) -> int:
        return purge_published(self.bind, keep_published)


def mark_published(
    bind: Any, message_ids: Sequence[str], token: str | None, keep_published: float
) -> None:
    """The broker took these messages: delete their rows, or stamp them to be kept, in
    one transaction; with *token*, only the rows it still claims."""
    table = outbox_table
    with bind.begin() as connection:
        for chunk in chunked(message_ids):
            where: Any = table.c.message_id.in_(chunk)
            if token is not None:
                where = sa.and_(where, table.c.claimed_by == token)
            if keep_published > 0:
                statement: Any = (
                    table.update()
                    .where(where)
                    .values(published_at=now(), claimed_by=None, claimed_until=None)
                )
            else:
                statement = table.delete().where(where)
            connection.execute(statement)


def release(bind: Any, message_id: str, token: str, *, failed: bool, backoff: float) -> None:
    """Give a claimed row back; *failed*: count the attempt and wait *backoff* s."""
    table = outbox_table
    values: dict[str, Any] = {"claimed_by": None, "claimed_until": None}
    if failed:
        values["attempts"] = table.c.attempts + 1
        values["next_attempt_at"] = now() + datetime.timedelta(seconds=backoff)
    with bind.begin() as connection:
        connection.execute(
            table.update()
            .where(table.c.message_id == message_id, table.c.claimed_by == token)
            .values(**values)
        )


def _claim(engine: Any, token: str, batch: int, claim_seconds: float) -> list[Any]:
    """Claim up to *batch* due rows for *token*; the rows claimed."""
    table = outbox_table
    at = now()
    due = sa.and_(
        table.c.published_at.is_(None),
        table.c.next_attempt_at <= at,
        sa.or_(table.c.claimed_until.is_(None), table.c.claimed_until < at),
    )
    until = at + datetime.timedelta(seconds=claim_seconds)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            ids = [
                row[0]
                for row in connection.execute(
                    sa.select(table.c.id)
                    .where(due)
                    .order_by(table.c.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ]
            if not ids:
                return []
            connection.execute(
                table.update()
                .where(table.c.id.in_(ids))
                .values(claimed_by=token, claimed_until=until)
            )
        else:
            # One statement: SQLite runs it under its write lock, so two relays never
            # both claim a row (the condition is checked again by the UPDATE itself).
            chosen = sa.select(table.c.id).where(due).order_by(table.c.id).limit(batch)
            connection.execute(
                table.update()
                .where(table.c.id.in_(chosen.scalar_subquery()), due)
                .values(claimed_by=token, claimed_until=until)
            )
        return list(
            connection.execute(
                sa.select(table).where(table.c.claimed_by == token).order_by(table.c.id)
            )
        )


def purge_published(engine: Any, keep_published: float) -> int:
    """Delete rows published more than *keep_published* seconds ago; how many."""
    table = outbox_table
    cutoff = now() - datetime.timedelta(seconds=keep_published)
    with engine.begin() as connection:
        result = connection.execute(
            table.delete().where(table.c.published_at.is_not(None), table.c.published_at < cutoff)
        )
    return int(result.rowcount or 0)


def relay_once(
    engine: Any,
    app: Any,
    *,
    batch: int = 100,
    publish_timeout: float | None = None,
    claim_seconds: float | None = None,
    backoff: float = 1.0,
    max_backoff: float = 300.0,
    keep_published: float | None = None,
    relay_id: str = "relay",
) -> int:
    """Publish the outbox's due rows once, up to *batch* of them; how many were published.

    *engine*: a SQLAlchemy engine on the outbox's database; *app*: the Celery app to
    publish with.  Each publish waits at most *publish_timeout* (default: the app's
    ``tocsin_publish_timeout``, else 10 s); at the first failure the row's attempt is
    counted and it waits ``backoff * 2**(attempts-1)`` s (at most *max_backoff*, with
    jitter), and the rest of the batch is given back untouched (the broker is likely
    down).  Published rows are deleted, or kept *keep_published* seconds (default: the
    app's ``tocsin_outbox_keep_published``, else 0).
    """
    return relay_pass(
        SQLAlchemyOutbox(engine),
        app,
        batch=batch,
        publish_timeout=publish_timeout,
        claim_seconds=claim_seconds,
        backoff=backoff,
        max_backoff=max_backoff,
        keep_published=keep_published,
        relay_id=relay_id,
    )


def run_relay(
    engine: Any,
    app: Any,
    *,
    interval: float = 1.0,
    stop: Callable[[], bool] | None = None,
    **options: Any,
) -> None:
    """Call :func:`relay_once` in a loop until *stop()* is true: at once again while it
    finds full batches, else after *interval* seconds.  Errors are logged, not raised."""
    relay_loop(
        lambda: relay_once(engine, app, **options),
        batch=int(options.get("batch", 100)),
        interval=interval,
        stop=stop,
    )


def relay_task(
    app: Any, database: str, *, name: str = "tocsin.outbox_relay", **options: Any
) -> Any:
    """Register a Celery task on *app* that makes one :func:`relay_once` pass over the
    outbox in the database at URL *database* (its engine made once per process), and
    return it; schedule it with beat (``app.conf.beat_schedule``).  *options* go to
    :func:`relay_once`.  The task returns how many rows it published."""
    engines: dict[int, Any] = {}

    def relay() -> int:
        engine = engines.get(os.getpid())
        if engine is None:  # a forked worker child makes its own
            engine = engines[os.getpid()] = sa.create_engine(database)
        return relay_once(engine, app, **options)

    return app.task(name=name, shared=False, ignore_result=True)(relay)
