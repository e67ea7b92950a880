"""After commit: the hooks that enqueue a deferred send only once the sender's
transaction commits (and never if it rolls back), for SQLAlchemy sessions and Django
databases, and how to find the transaction a send belongs to."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, cast

from tocsin.contrib.celery._codec_registry import codecs
from tocsin.contrib.celery._models import DjangoModelCodec, SQLAlchemyCodec

#: The logger of the whole package, under the name users configure.
logger = logging.getLogger("tocsin.contrib.celery")

#: The key of a session's ``info`` under which its pending deliveries wait.
_PENDING = "tocsin.contrib.celery:pending"


def sqlalchemy_session(given: Any, sender: Any, named: Mapping[str, Any]) -> Any:
    """The SQLAlchemy session a send belongs to, or None.

    *given* is ``deferred(session=...)``: a session, or a callable that returns one
    (a ``scoped_session``, say).  Without it, the session of the first mapped instance
    in a session among the sender and the arguments.
    """
    if given is not None:
        from sqlalchemy.orm import Session

        return given if isinstance(given, Session) else given()
    if "sqlalchemy.orm" not in sys.modules:
        return None
    from sqlalchemy.orm import object_session

    sqlalchemy_codec = codecs.get(SQLAlchemyCodec.tag)
    for value in (sender, *named.values()):
        if sqlalchemy_codec is not None and codecs.codec_for(type(value)) is sqlalchemy_codec:
            session = object_session(value)
            if session is not None:
                return session
    return None


def after_sqlalchemy_commit(session: Any, callback: Callable[[], None]) -> None:
    """Run *callback* when *session*'s outermost transaction commits; drop it on rollback.

    Sent inside a savepoint, it is dropped if that savepoint (or anything around it)
    rolls back.  Not in a transaction: now.
    """
    if not session.in_transaction():
        callback()
        return
    pending = session.info.get(_PENDING)
    if pending is None:
        from sqlalchemy import event

        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _sa_after_commit)
        event.listen(session, "after_soft_rollback", _sa_after_soft_rollback)
        event.listen(session, "after_transaction_end", _sa_after_transaction_end)
    transaction = session.get_nested_transaction() or session.get_transaction()
    pending.append((transaction, callback))


def _sa_after_commit(session: Any) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint was released; the outer transaction may still roll back
    pending = session.info.get(_PENDING)
    if not pending:
        return
    ready = [callback for _, callback in pending]
    pending.clear()
    for callback in ready:
        callback()


def _sa_after_soft_rollback(session: Any, previous_transaction: Any) -> None:
    pending = session.info.get(_PENDING)
    if pending:
        kept = [(t, cb) for t, cb in pending if not _within(t, previous_transaction)]
        if len(kept) != len(pending):
            logger.debug("Dropped %d deferred deliveries: rolled back.", len(pending) - len(kept))
        pending[:] = kept


def _sa_after_transaction_end(session: Any, transaction: Any) -> None:
    if transaction.parent is None:
        pending = session.info.get(_PENDING)
        if pending:  # closed without committing
            logger.debug("Dropped %d deferred deliveries: transaction closed.", len(pending))
            pending.clear()


def _within(transaction: Any, ancestor: Any) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def django_alias(sender: Any, named: Mapping[str, Any]) -> str | None:
    """The database alias to wait for: a Django instance's, or the default one."""
    conf = sys.modules.get("django.conf")
    if conf is None or not conf.settings.configured:
        return None
    django_codec = codecs.get(DjangoModelCodec.tag)
    for value in (sender, *named.values()):
        if django_codec is not None and codecs.codec_for(type(value)) is django_codec:
            return cast(str, value._state.db or "default")
    from django.db import DEFAULT_DB_ALIAS  # type: ignore[import-untyped, import-not-found, unused-ignore]

    alias: str = DEFAULT_DB_ALIAS
    return alias


def after_django_commit(alias: str, callback: Callable[[], None]) -> None:
    from django.db import transaction  # type: ignore[import-untyped, import-not-found, unused-ignore]

    transaction.on_commit(callback, using=alias)
