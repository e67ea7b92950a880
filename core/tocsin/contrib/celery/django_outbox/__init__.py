"""The transactional outbox for Django: ``deferred(on_commit=True, outbox=True)`` in a
Django project.

Add ``"tocsin.contrib.celery.django_outbox"`` to ``INSTALLED_APPS`` and run
``manage.py migrate``: its migration creates ``tocsin_outbox``, the table of
:mod:`tocsin.contrib.celery.outbox` (same columns, same index).  A send whose
transaction is Django's INSERTs its message there through the connection of the
database alias the send belongs to (a model instance's, else ``default``), so the row
commits or rolls back with the caller's ``atomic`` block; ``transaction.on_commit``
then publishes it and deletes the row, or leaves it pending if the broker did not take
it.

The relay: :func:`relay_once` / :func:`run_relay`, ``manage.py tocsin_relay [--once]``,
or the Celery beat task :func:`relay_task`.  Several may run at once: each claims its
batch first (``select_for_update(skip_locked=True)`` on PostgreSQL, one atomic
``UPDATE`` elsewhere), as the SQLAlchemy relay does; the two can share the table.

This module needs the app registry only when it touches the table, so it can be
imported from settings-free code.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, cast

from django.db import connections, transaction

from tocsin._errors import DeferredConfigurationError
from tocsin.contrib.celery._codecs import JSON
from tocsin.contrib.celery._outbox_common import (
    OutboxRow,
    chunked,
    claim_token,
    claimed_until,
    dump_compact,
    now,
    relay_loop,
    relay_pass,
    wait_settled,
)

__all__ = ["APP_NAME", "DjangoOutbox", "relay_once", "relay_task", "run_relay", "wait_settled"]

#: The name to put in ``INSTALLED_APPS``.
APP_NAME = "tocsin.contrib.celery.django_outbox"
#: The table the migration creates.
TABLE = "tocsin_outbox"

#: The aliases whose table was seen (checked once per process and alias).
_tables_seen: set[str] = set()


def _model() -> Any:
    from tocsin.contrib.celery.django_outbox.models import OutboxMessage

    return OutboxMessage


class DjangoOutbox:
    """The outbox table in the Django database *alias*."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias

    def __repr__(self) -> str:
        return f"<DjangoOutbox {self.alias!r}>"

    def _rows(self) -> Any:
        return _model().objects.using(self.alias)

    def check(self, receiver: str | None = None) -> None:
        """Raise :class:`DeferredConfigurationError` unless the app is installed and
        its table exists in this database; *receiver* is named in the message."""
        if self.alias in _tables_seen:
            return
        from django.apps import apps

        who = f"{receiver} writes to the outbox" if receiver else "The outbox is used"
        if not apps.is_installed(APP_NAME):
            raise DeferredConfigurationError(
                f"{who} in a Django transaction, but {APP_NAME!r} is not in "
                f"INSTALLED_APPS: add it, then run `manage.py migrate`."
            )
        connection = connections[self.alias]
        with connection.cursor() as cursor:
            tables = connection.introspection.table_names(cursor)
        if TABLE not in tables:
            raise DeferredConfigurationError(
                f"{who} in a Django transaction, but the database {self.alias!r} has no "
                f"{TABLE} table: run `manage.py migrate tocsin_outbox"
                f"{'' if self.alias == 'default' else f' --database {self.alias}'}`."
            )
        _tables_seen.add(self.alias)

    def insert_message(
        self,
        *,
        message_id: str,
        task_name: str,
        envelope: Mapping[str, JSON],
        options: Mapping[str, Any],
        claim_seconds: float | None,
        receiver: str | None = None,
    ) -> str | None:
        """INSERT one pending message in the current transaction of this alias (the
        caller's ``atomic`` block, if any), claimed by the sender for *claim_seconds*;
        returns the claim token."""
        self.check(receiver)
        at = now()
        token = claim_token("sender") if claim_seconds is not None else None
        self._rows().create(
            message_id=message_id,
            task_name=task_name,
            envelope=dump_compact(envelope),
            options=dump_compact(options),
            created=at,
            attempts=0,
            next_attempt_at=at,
            claimed_by=token,
            claimed_until=claimed_until(at, claim_seconds),
        )
        return token

    def claim(self, token: str, batch: int, claim_seconds: float) -> list[OutboxRow]:
        from django.db.models import Q

        at = now()
        due = Q(published_at__isnull=True, next_attempt_at__lte=at) & (
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=at)
        )
        until = at + datetime.timedelta(seconds=claim_seconds)
        rows = self._rows()
        with transaction.atomic(using=self.alias):
            if connections[self.alias].vendor == "postgresql":
                ids = list(
                    rows.filter(due)
                    .order_by("id")
                    .select_for_update(skip_locked=True)
                    .values_list("id", flat=True)[:batch]
                )
                if not ids:
                    return []
                rows.filter(id__in=ids).update(claimed_by=token, claimed_until=until)
            else:
                # One statement: SQLite runs it under its write lock, so two relays
                # never both claim a row (the UPDATE checks the condition again).
                chosen = rows.filter(due).order_by("id").values("id")[:batch]
                rows.filter(due, id__in=chosen).update(claimed_by=token, claimed_until=until)
            return cast(list[OutboxRow], list(rows.filter(claimed_by=token).order_by("id")))

    @property
    def key(self) -> Hashable:
        return ("django", self.alias)

    def mark_published(
        self, message_ids: Sequence[str], token: str | None, keep_published: float
    ) -> None:
        # The settler thread holds its own connection for the process's life: one that
        # broke (a database restart) is replaced rather than failing every batch.
        self.tidy()
        with transaction.atomic(using=self.alias):
            for chunk in chunked(message_ids):
                rows = self._rows().filter(message_id__in=chunk)
                if token is not None:
                    rows = rows.filter(claimed_by=token)
                if keep_published > 0:
                    rows.update(published_at=now(), claimed_by=None, claimed_until=None)
                else:
                    rows.delete()

    def release(self, message_id: str, token: str, *, failed: bool, backoff: float) -> None:
        from django.db.models import F

        values: dict[str, Any] = {"claimed_by": None, "claimed_until": None}
        if failed:
            values["attempts"] = F("attempts") + 1
            values["next_attempt_at"] = now() + datetime.timedelta(seconds=backoff)
        self._rows().filter(message_id=message_id, claimed_by=token).update(**values)

    def purge_published(self, keep_published: float) -> int:
        cutoff = now() - datetime.timedelta(seconds=keep_published)
        deleted, _ = self._rows().filter(published_at__lt=cutoff).delete()
        return int(deleted)

    def tidy(self) -> None:
        """Drop this thread's connection if it broke, outside any transaction (a relay
        runs for long, where no request cycle tidies connections)."""
        connection = connections[self.alias]
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def relay_once(
    app: Any,
    *,
    using: str = "default",
    batch: int = 100,
    publish_timeout: float | None = None,
    claim_seconds: float | None = None,
    backoff: float = 1.0,
    max_backoff: float = 300.0,
    keep_published: float | None = None,
    relay_id: str = "relay",
) -> int:
    """Publish the due rows of the outbox in the Django database *using* once, up to
    *batch* of them, with the Celery *app*; how many were published.

    The options are those of :func:`tocsin.contrib.celery.outbox.relay_once`: each
    publish waits at most *publish_timeout*; the first failure counts the row's attempt
    and puts it off by ``backoff * 2**(attempts-1)`` s (at most *max_backoff*, with
    jitter), and gives the rest of the batch back; published rows are deleted, or kept
    *keep_published* seconds.
    """
    store = DjangoOutbox(using)
    store.check()
    try:
        return relay_pass(
            store,
            app,
            batch=batch,
            publish_timeout=publish_timeout,
            claim_seconds=claim_seconds,
            backoff=backoff,
            max_backoff=max_backoff,
            keep_published=keep_published,
            relay_id=relay_id,
        )
    finally:
        store.tidy()


def run_relay(
    app: Any,
    *,
    using: str = "default",
    interval: float = 1.0,
    stop: Callable[[], bool] | None = None,
    **options: Any,
) -> None:
    """Call :func:`relay_once` in a loop until *stop()* is true: at once again while it
    finds full batches, else after *interval* seconds.  Errors are logged, not raised."""
    relay_loop(
        lambda: relay_once(app, using=using, **options),
        batch=int(options.get("batch", 100)),
        interval=interval,
        stop=stop,
    )


def relay_task(
    app: Any, *, using: str = "default", name: str = "tocsin.outbox_relay", **options: Any
) -> Any:
    """Register a Celery task on *app* that makes one :func:`relay_once` pass over the
    outbox in the Django database *using*, and return it; schedule it with beat
    (``app.conf.beat_schedule``).  The worker must have Django set up (as a Django
    project's worker has).  *options* go to :func:`relay_once`; the task returns how
    many rows it published."""

    def relay() -> int:
        return relay_once(app, using=using, **options)

    return app.task(name=name, shared=False, ignore_result=True)(relay)
