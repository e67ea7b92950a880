"""The transactional outbox: a deferred send written to a table in the caller's
transaction, published after the commit, and relayed later if the broker was not there.

``deferred(on_commit=True, outbox=True)`` INSERTs the encoded message (the envelope the
task gets, under the ``tocsin_message_id`` it will carry) into ``tocsin_outbox`` on the
connection of the sender's SQLAlchemy session, so the row commits or rolls back with the
data.  After the commit it is published at once, within the publish timeout; a row that
could not be published stays pending, and :func:`relay_once` / :func:`run_relay` (or
``tocsin relay --database URL``) publish it later, with exponential backoff.

Several relays may run at once: each claims a batch of rows before publishing it
(``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite, whose writers are
serialized, one atomic ``UPDATE`` of ``claimed_by``/``claimed_until``), so a row is
published once in the common case.  Delivery stays at least once: a relay that dies
after publishing and before marking the row lets its claim expire, and the row is
published again, with the same message id (the Celery task id).

The table: :func:`create_outbox_table` creates it (``metadata.create_all``), and the
Alembic revision shipped in ``tocsin/contrib/celery/migrations`` does the same for a
project migrated with Alembic (see the docs).
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa

from tocsin.contrib.celery._codecs import JSON
from tocsin.contrib.celery._message import argsrepr
from tocsin.contrib.celery._publish import publish, publish_timeout_of

__all__ = [
    "KEEP_PUBLISHED_SETTING",
    "create_outbox_table",
    "metadata",
    "outbox_table",
    "relay_once",
    "relay_task",
    "run_relay",
]

#: The logger of the whole package, under the name users configure.
logger = logging.getLogger("tocsin.contrib.celery")

#: The app setting: seconds a published row is kept (0, the default: deleted at once).
KEEP_PUBLISHED_SETTING = "tocsin_outbox_keep_published"
#: At most this many message ids in one statement that marks a relay's batch published
#: (SQLite before 3.32 takes at most 999 parameters per statement).
MARK_CHUNK = 500
#: How long the sender's own claim on a fresh row lasts beyond its publish timeout:
#: a relay leaves the row alone meanwhile, so that it is not published twice.
SENDER_CLAIM_MARGIN = 5.0

metadata = sa.MetaData()

#: The outbox table; one row per deferred send made with ``outbox=True``.
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


#: The statements of every outboxed send, built once (building one per call costs more
#: than running it on SQLite).
_INSERT = outbox_table.insert()
_DELETE_CLAIMED = outbox_table.delete().where(
    outbox_table.c.message_id == sa.bindparam("message"),
    outbox_table.c.claimed_by == sa.bindparam("token"),
)


def _now() -> datetime.datetime:
    # Naive UTC: the same on every database (SQLite stores no time zone).
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def create_outbox_table(bind: Any) -> None:
    """Create ``tocsin_outbox`` (if missing) with *bind*, an engine or connection."""
    metadata.create_all(bind, tables=[outbox_table])


def claim_token(prefix: str) -> str:
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def insert_message(
    connection: Any,
    *,
    message_id: str,
    task_name: str,
    envelope: Mapping[str, JSON],
    options: Mapping[str, Any],
    claim_seconds: float,
) -> str:
    """INSERT one pending message on *connection* (in its transaction), claimed by the
    sender for *claim_seconds*; returns the claim token."""
    now = _now()
    token = claim_token("sender")
    connection.execute(
        _INSERT,
        {
            "message_id": message_id,
            "task_name": task_name,
            "envelope": json.dumps(envelope, separators=(",", ":")),
            "options": json.dumps(dict(options), separators=(",", ":")),
            "created": now,
            "attempts": 0,
            "next_attempt_at": now,
            "claimed_by": token,
            "claimed_until": now + datetime.timedelta(seconds=claim_seconds),
        },
    )
    return token


def mark_published(bind: Any, message_id: str, token: str | None, keep_published: float) -> None:
    """The message was taken by the broker: delete its row, or stamp it to be kept."""
    with _begin(bind) as connection:
        if token is not None and keep_published <= 0:  # every send: the prebuilt DELETE
            connection.execute(_DELETE_CLAIMED, {"message": message_id, "token": token})
        else:
            where = outbox_table.c.message_id == message_id
            connection.execute(_published(where, token, keep_published))


def mark_all_published(
    bind: Any, message_ids: Sequence[str], token: str, keep_published: float
) -> None:
    """:func:`mark_published` for all of *message_ids* (claimed by *token*), in one
    transaction and a statement per :data:`MARK_CHUNK` of them."""
    if not message_ids:
        return
    with _begin(bind) as connection:
        for start in range(0, len(message_ids), MARK_CHUNK):
            chunk = list(message_ids[start : start + MARK_CHUNK])
            connection.execute(
                _published(outbox_table.c.message_id.in_(chunk), token, keep_published)
            )


def _published(where: Any, token: str | None, keep_published: float) -> Any:
    """The DELETE (or the UPDATE that stamps ``published_at``) of published rows."""
    table = outbox_table
    if token is not None:
        where = sa.and_(where, table.c.claimed_by == token)
    if keep_published > 0:
        return (
            table.update()
            .where(where)
            .values(published_at=_now(), claimed_by=None, claimed_until=None)
        )
    return table.delete().where(where)


def release(bind: Any, message_id: str, token: str, *, failed: bool, backoff: float) -> None:
    """Give a claimed row back; *failed*: count the attempt and wait *backoff* s."""
    table = outbox_table
    values: dict[str, Any] = {"claimed_by": None, "claimed_until": None}
    if failed:
        values["attempts"] = table.c.attempts + 1
        values["next_attempt_at"] = _now() + datetime.timedelta(seconds=backoff)
    with _begin(bind) as connection:
        connection.execute(
            table.update()
            .where(table.c.message_id == message_id, table.c.claimed_by == token)
            .values(**values)
        )


def _begin(bind: Any) -> Any:
    return bind.begin()


def keep_published_of(app: Any, given: float | None = None) -> float:
    if given is not None:
        return float(given)
    value = app.conf.get(KEEP_PUBLISHED_SETTING)
    return float(value) if value else 0.0


def backoff_seconds(attempts: int, base: float, maximum: float, jitter: bool = True) -> float:
    """Exponential backoff after *attempts* failed publishes (1, 2, ...)."""
    delay: float = min(maximum, base * (2 ** max(0, attempts - 1)))
    if jitter:
        delay = random.uniform(delay / 2, delay)
    return delay


def _claim(engine: Any, token: str, batch: int, claim_seconds: float) -> list[Any]:
    """Claim up to *batch* due rows for *token*; the rows claimed."""
    table = outbox_table
    now = _now()
    due = sa.and_(
        table.c.published_at.is_(None),
        table.c.next_attempt_at <= now,
        sa.or_(table.c.claimed_until.is_(None), table.c.claimed_until < now),
    )
    until = now + datetime.timedelta(seconds=claim_seconds)
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
    cutoff = _now() - datetime.timedelta(seconds=keep_published)
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
    app's ``tocsin_outbox_keep_published``, else 0), all in one transaction at the end
    of the pass.
    """
    from tocsin.contrib.celery._worker import install

    task = install(app)
    timeout = publish_timeout_of(publish_timeout, app)
    keep = keep_published_of(app, keep_published)
    if claim_seconds is None:
        claim_seconds = max(60.0, timeout * 2 + SENDER_CLAIM_MARGIN) if timeout < 1e9 else 3600.0
    token = claim_token(relay_id)
    rows = _claim(engine, token, batch, claim_seconds)
    # The rows the broker took, deleted (or stamped) together once the batch is done,
    # in one transaction rather than one per row: they stay claimed by this relay
    # meanwhile.  A relay that dies before that leaves them to be published again when
    # its claim expires, as one that died between a publish and its row's DELETE did.
    done: list[str] = []
    try:
        _relay_rows(engine, task, rows, token, done, timeout, keep, backoff, max_backoff)
    finally:
        mark_all_published(engine, done, token, keep)
    if keep > 0:
        purge_published(engine, keep)
    return len(done)


def _relay_rows(
    engine: Any,
    task: Any,
    rows: list[Any],
    token: str,
    done: list[str],
    timeout: float,
    keep: float,
    backoff: float,
    max_backoff: float,
) -> None:
    """Publish the claimed *rows* in order, appending to *done* the message id of each
    the broker took; at the first failure, give the rest back."""
    broken = False
    for row in rows:
        if broken:
            release(engine, row.message_id, token, failed=False, backoff=0)
            continue
        envelope = json.loads(row.envelope)
        options = json.loads(row.options)
        settle = functools.partial(
            _settle, engine, row.message_id, token, keep, row.attempts + 1, backoff, max_backoff
        )
        try:
            publish(
                task,
                (envelope,),
                {"argsrepr": argsrepr(envelope), **options, "task_id": row.message_id},
                timeout=timeout,
                identity=cast(str, envelope.get("receiver")),
                signal=cast(str, envelope.get("signal")),
                on_late=settle,
            )
        except Exception as error:
            delay = backoff_seconds(row.attempts + 1, backoff, max_backoff)
            logger.warning(
                "Outbox relay could not publish message %s (attempt %d); next try in "
                "about %.1f s: %s",
                row.message_id,
                row.attempts + 1,
                delay,
                error,
            )
            if not getattr(error, "may_publish_late", False):
                release(engine, row.message_id, token, failed=True, backoff=delay)
            # else: settled when that publish ends (or the claim expires)
            broken = True
            continue
        done.append(row.message_id)


def _settle(
    engine: Any,
    message_id: str,
    token: str,
    keep: float,
    attempts: int,
    backoff: float,
    max_backoff: float,
    error: BaseException | None,
) -> None:
    """A publish the relay gave up waiting for has ended after all."""
    if error is None:
        mark_published(engine, message_id, token, keep)
    else:
        delay = backoff_seconds(attempts, backoff, max_backoff)
        release(engine, message_id, token, failed=True, backoff=delay)


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
    batch = int(options.get("batch", 100))
    while not (stop is not None and stop()):
        try:
            published = relay_once(engine, app, **options)
        except Exception:
            logger.exception("Outbox relay failed; trying again in %.1f s.", interval)
            published = 0
        if published < batch:
            time.sleep(interval)


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
