"""What the outbox's two stores share: the SQLAlchemy one (:mod:`.outbox`) and the
Django one (:mod:`.django_outbox`) write the same table, ``tocsin_outbox``, and the
sender and the relays do the same with a row whichever wrote it.

A store knows how to claim due rows, mark one published, give one back and purge the
published ones on its database (:class:`OutboxStore`); :func:`relay_pass` is one pass
of a relay over any store, :func:`relay_loop` runs passes until told to stop, and
:func:`publish_outboxed` is what the sender does with its fresh row after the commit.
Times are naive UTC, the same on every database (SQLite stores no time zone).
"""

from __future__ import annotations

import atexit
import datetime
import importlib
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, Protocol, cast

from tocsin.contrib.celery._message import argsrepr
from tocsin.contrib.celery._publish import broker_of, publish, publish_timeout_of
from tocsin.contrib.celery._worker import install

__all__ = [
    "KEEP_PUBLISHED_SETTING",
    "MARK_CHUNK",
    "SENDER_CLAIM_MARGIN",
    "OutboxRow",
    "OutboxStore",
    "backoff_seconds",
    "broker_answered",
    "broker_failed",
    "broker_resting",
    "chunked",
    "claim_token",
    "claimed_until",
    "dump_compact",
    "keep_published_of",
    "load_app",
    "now",
    "publish_outboxed",
    "relay_loop",
    "relay_pass",
    "sender_claim_seconds",
    "wait_settled",
]

#: The logger of the whole package, under the name users configure.
logger = logging.getLogger("tocsin.contrib.celery")

#: The app setting: seconds a published row is kept (0, the default: deleted at once).
KEEP_PUBLISHED_SETTING = "tocsin_outbox_keep_published"
#: How long the sender's own claim on a fresh row lasts beyond its publish timeout:
#: a relay leaves the row alone meanwhile, so that it is not published twice.
SENDER_CLAIM_MARGIN = 5.0
#: How long the settler lets published rows gather before it deletes them together:
#: one durable transaction for a burst of sends instead of one per send.
SETTLE_LINGER = 0.05
#: At most this many message ids in one statement that marks rows published (SQLite
#: before 3.32 takes at most 999 parameters).
MARK_CHUNK = 500


def chunked(message_ids: Sequence[str]) -> Iterator[list[str]]:
    """*message_ids* in lists of at most :data:`MARK_CHUNK`."""
    for start in range(0, len(message_ids), MARK_CHUNK):
        yield list(message_ids[start : start + MARK_CHUNK])


def load_app(spec: str) -> Any:
    """The Celery app that *spec*, ``MODULE:ATTR`` (ATTR: ``app`` if left out), names.
    Raises ValueError, saying what is wrong with *spec*, when it names none."""
    module_name, _, attribute = spec.partition(":")
    try:
        app: Any = importlib.import_module(module_name)
        for part in (attribute or "app").split("."):
            app = getattr(app, part)
    except Exception as error:
        raise ValueError(
            f"cannot load the Celery app {spec!r} (MODULE:ATTR, run from the folder "
            f"that holds MODULE): {type(error).__name__}: {error}"
        ) from error
    from celery import Celery  # type: ignore[import-untyped, import-not-found, unused-ignore]

    if not isinstance(app, Celery):
        raise ValueError(f"{spec!r} names {type(app).__name__} {app!r}, not a Celery app.")
    return app


def now() -> datetime.datetime:
    """Naive UTC: what every column of the outbox holds."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def claim_token(prefix: str) -> str:
    """A token no other claimer has: *prefix*, host, process and a random part."""
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def claimed_until(at: datetime.datetime, claim_seconds: float | None) -> datetime.datetime | None:
    """When a claim made *at* for *claim_seconds* ends (None: no claim)."""
    return None if claim_seconds is None else at + datetime.timedelta(seconds=claim_seconds)


def dump_compact(value: Mapping[str, Any]) -> str:
    """The JSON of an envelope or of publish options, as the ``envelope`` and
    ``options`` columns hold it."""
    return json.dumps(dict(value), separators=(",", ":"))


def keep_published_of(app: Any, given: float | None = None) -> float:
    """Seconds a published row is kept: *given*, else the app's setting, else 0."""
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


def sender_claim_seconds(timeout: float) -> float:
    """How long the sender holds its fresh row: its publish timeout, and a margin."""
    return (timeout if timeout < 1e9 else 3600.0) + SENDER_CLAIM_MARGIN


def _relay_claim_seconds(timeout: float) -> float:
    return max(60.0, timeout * 2 + SENDER_CLAIM_MARGIN) if timeout < 1e9 else 3600.0


#: After a failed publish, senders leave their rows to the relay for this long (seconds),
#: doubled on each further failure up to :data:`MAX_REST`.
FIRST_REST = 0.5
MAX_REST = 10.0


class _Rests:
    """Which brokers failed a publish lately, and until when senders leave them alone.

    Why: with the outbox a send that cannot publish loses nothing, so it need not wait
    the publish timeout; during an outage every send would otherwise pay it, and a burst
    of requests would queue up behind a dead broker (issue 15).  While a broker rests,
    an outbox send only writes its row, unclaimed, and the relay publishes it.  When
    the rest is over the next send tries again; a publish that succeeds, by a sender or
    a relay, ends the rest at once.
    """

    __slots__ = ("failures", "lock", "until")

    def __init__(self) -> None:
        #: Guards the two dicts (senders publish from several threads).
        self.lock = threading.Lock()
        #: Failed publishes in a row, per broker URL.
        self.failures: dict[str, int] = {}
        #: When the rest ends (``time.monotonic()``), per broker URL.
        self.until: dict[str, float] = {}

    def resting(self, broker: str) -> bool:
        until = self.until.get(broker)
        return until is not None and time.monotonic() < until

    def failed(self, broker: str) -> float:
        with self.lock:
            failures = self.failures[broker] = self.failures.get(broker, 0) + 1
            rest = min(MAX_REST, FIRST_REST * 2.0 ** (failures - 1))
            self.until[broker] = time.monotonic() + rest
        return rest

    def answered(self, broker: str) -> None:
        if broker in self.until:
            with self.lock:
                self.failures.pop(broker, None)
                self.until.pop(broker, None)


_rests = _Rests()


def broker_resting(app: Any) -> bool:
    """Whether *app*'s broker failed a publish lately: outbox sends then leave their
    rows to the relay instead of waiting on it (see :class:`_Rests`)."""
    if not _rests.until:  # nothing failed lately, the usual case: no URL to work out
        return False
    return _rests.resting(broker_of(app))


def broker_failed(app: Any) -> float:
    """A publish to *app*'s broker failed: rest it; for how long (seconds)."""
    return _rests.failed(broker_of(app))


def broker_answered(app: Any) -> None:
    """A publish to *app*'s broker succeeded: senders publish at once again."""
    if _rests.until:
        _rests.answered(broker_of(app))


class OutboxRow(Protocol):
    """What a relay reads of a claimed row."""

    @property
    def message_id(self) -> str: ...
    @property
    def envelope(self) -> str: ...
    @property
    def options(self) -> str: ...
    @property
    def attempts(self) -> int: ...


class OutboxStore(Protocol):
    """The outbox table on one database, as the sender and the relays use it."""

    def claim(self, token: str, batch: int, claim_seconds: float) -> list[OutboxRow]:
        """Claim up to *batch* due rows for *token* (for *claim_seconds*); those rows."""
        ...

    @property
    def key(self) -> Hashable:
        """The same for every store on one database (the settler batches by it)."""
        ...

    def mark_published(
        self, message_ids: Sequence[str], token: str | None, keep_published: float
    ) -> None:
        """The broker took these messages: delete their rows, or stamp them to be kept,
        in one transaction; with *token*, only the rows it still claims."""
        ...

    def release(self, message_id: str, token: str, *, failed: bool, backoff: float) -> None:
        """Give a claimed row back; *failed*: count the attempt and wait *backoff* s."""
        ...

    def purge_published(self, keep_published: float) -> int:
        """Delete rows published more than *keep_published* seconds ago; how many."""
        ...


def relay_pass(
    store: OutboxStore,
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
    """One relay pass over *store*, publishing with *app*; how many were published.

    (The options are those of ``relay_once``, documented there.)
    """
    task = install(app)
    timeout = publish_timeout_of(publish_timeout, app)
    keep = keep_published_of(app, keep_published)
    if claim_seconds is None:
        claim_seconds = _relay_claim_seconds(timeout)
    token = claim_token(relay_id)
    # The rows the broker took are deleted (or stamped) together at the end of the pass,
    # in one transaction instead of one per row (bench_outbox: a relay drained at 0.16x
    # delay() before); they stay claimed by this relay until then.
    done: list[str] = []
    try:
        _publish_claimed(
            store,
            task,
            token,
            done,
            store.claim(token, batch, claim_seconds),
            timeout,
            keep,
            backoff,
            max_backoff,
            app,
        )
    finally:
        if done:
            store.mark_published(done, token, keep)
    if keep > 0:
        store.purge_published(keep)
    return len(done)


def _publish_claimed(
    store: OutboxStore,
    task: Any,
    token: str,
    done: list[str],
    rows: list[OutboxRow],
    timeout: float,
    keep: float,
    backoff: float,
    max_backoff: float,
    app: Any,
) -> None:
    """Publish the claimed *rows* in order, adding to *done* the id of each the broker
    took; at the first failure, give the rest back untouched."""
    broken = False
    for row in rows:
        if broken:
            store.release(row.message_id, token, failed=False, backoff=0)
            continue
        envelope = json.loads(row.envelope)
        options = json.loads(row.options)
        attempts = row.attempts + 1
        message_id = row.message_id

        def settle(
            error: BaseException | None, message_id: str = message_id, attempts: int = attempts
        ) -> None:
            # A publish the relay gave up waiting for has ended after all.
            if error is None:
                broker_answered(app)
                store.mark_published([message_id], token, keep)
            else:
                delay = backoff_seconds(attempts, backoff, max_backoff)
                store.release(message_id, token, failed=True, backoff=delay)

        try:
            publish(
                task,
                (envelope,),
                {"argsrepr": argsrepr(envelope), **options, "task_id": message_id},
                timeout=timeout,
                identity=cast(str, envelope.get("receiver")),
                signal=cast(str, envelope.get("signal")),
                on_late=settle,
            )
        except Exception as error:
            broker_failed(app)
            delay = backoff_seconds(attempts, backoff, max_backoff)
            logger.warning(
                "Outbox relay could not publish message %s (attempt %d); next try in "
                "about %.1f s: %s",
                message_id,
                attempts,
                delay,
                error,
            )
            if not getattr(error, "may_publish_late", False):
                store.release(message_id, token, failed=True, backoff=delay)
            # else: settled when that publish ends (or the claim expires)
            broken = True
            continue
        broker_answered(app)
        done.append(message_id)


def relay_loop(
    one_pass: Callable[[], int],
    *,
    batch: int,
    interval: float,
    stop: Callable[[], bool] | None,
) -> None:
    """Call *one_pass* until *stop()* is true: at once again while it publishes full
    batches, else after *interval* seconds.  Errors are logged, not raised."""
    while not (stop is not None and stop()):
        try:
            published = one_pass()
        except Exception:
            logger.exception("Outbox relay failed; trying again in %.1f s.", interval)
            published = 0
        if published < batch:
            time.sleep(interval)


def publish_outboxed(
    store: OutboxStore,
    send: Callable[[Callable[[BaseException | None], None]], Any],
    *,
    app: Any,
    identity: str,
    signal: str,
    message_id: str,
    token: str,
) -> None:
    """After the commit: publish the sender's fresh row with *send(on_late)*, then
    delete it (or keep it stamped); if the broker did not take it, give it back to the
    relays, its attempt counted.  Nothing is raised: the sender's transaction is over."""
    keep = keep_published_of(app)

    def settle(error: BaseException | None) -> None:
        # The row's fate once the broker took the message, or did not.
        if error is None:
            broker_answered(app)
            _settler.add(store, message_id, keep)
        else:
            store.release(message_id, token, failed=True, backoff=0)

    try:
        send(settle)
    except Exception as error:
        rest = broker_failed(app)
        logger.warning(
            "Could not enqueue deferred receiver %s for signal %r after the commit "
            "(message %s); it stays in the outbox for the relay, and the next %.1f s of "
            "outbox sends leave theirs to it too: %s",
            identity,
            signal,
            message_id,
            rest,
            error,
        )
        if getattr(error, "may_publish_late", False):
            return  # settled when that publish ends, else when the claim expires
        try:
            store.release(message_id, token, failed=True, backoff=0)
        except Exception:
            logger.exception("Could not release outbox message %s.", message_id)
        return
    broker_answered(app)
    _settler.add(store, message_id, keep)


class _Settler:
    """Deletes (or stamps) the rows that senders published, in batches, from a thread.

    Why: that DELETE is a second durable transaction after the caller's commit, and it
    was most of what the outbox cost a send (bench_outbox: 1.8x commit + delay() with
    it in the sending thread; issue 15 asks for 1.2x); rows gathered for
    SETTLE_LINGER share one.  A row waiting here stays claimed
    by its sender (its publish timeout plus SENDER_CLAIM_MARGIN), so no relay publishes
    it again meanwhile; what is queued at a normal exit is settled then (atexit), and a
    process killed first leaves its rows to a relay: a duplicate, never a loss.
    """

    __slots__ = ("idle", "lock", "pending", "thread", "wake")

    def __init__(self) -> None:
        #: Guards everything below.
        self.lock = threading.Lock()
        #: Set when something is pending (the thread waits on it).
        self.wake = threading.Event()
        #: Set while nothing is pending or being settled (wait_settled waits on it).
        self.idle = threading.Event()
        self.idle.set()
        #: (store, message id, keep_published) of each published row not settled yet.
        self.pending: list[tuple[OutboxStore, str, float]] = []
        self.thread: threading.Thread | None = None

    def add(self, store: OutboxStore, message_id: str, keep: float) -> None:
        with self.lock:
            self.pending.append((store, message_id, keep))
            self.idle.clear()
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._serve, name="tocsin-outbox-settler", daemon=True
                )
                self.thread.start()
        self.wake.set()

    def _serve(self) -> None:
        while True:
            self.wake.wait()
            time.sleep(SETTLE_LINGER)  # let a burst's rows gather into one transaction
            self.settle()

    def settle(self) -> None:
        """Settle what is pending now, one transaction per database."""
        with self.lock:
            taken, self.pending = self.pending, []
            self.wake.clear()
        groups: dict[tuple[Hashable, float], tuple[OutboxStore, list[str]]] = {}
        for store, message_id, keep in taken:
            groups.setdefault((store.key, keep), (store, []))[1].append(message_id)
        for (_, keep), (store, message_ids) in groups.items():
            try:
                store.mark_published(message_ids, None, keep)
            except Exception:  # published: a relay publishes them again (at least once)
                logger.exception(
                    "Could not mark %d published outbox message(s) (%s, ...) as published.",
                    len(message_ids),
                    message_ids[0],
                )
        with self.lock:
            if not self.pending:
                self.idle.set()

    def forget(self) -> None:
        """After a fork: the child has no settler thread, and nothing of its own yet."""
        self.__init__()  # type: ignore[misc]


_settler = _Settler()
atexit.register(_settler.settle)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_settler.forget)


def wait_settled(timeout: float = 5.0) -> bool:
    """Wait until the rows this process's senders published so far are deleted (or
    stamped published): for tests and scripts that look at the table right after a
    send.  False if that took more than *timeout* seconds."""
    return _settler.idle.wait(timeout)
