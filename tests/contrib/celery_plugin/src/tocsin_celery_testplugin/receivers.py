"""The plugin: deferred receivers, declared with ``@receiver`` as any plugin's are."""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from typing import Any

from tocsin import Signal, receiver
from tocsin.contrib.celery import RetryPolicy, deferred
from tocsin_celery_testplugin import signals
from tocsin_celery_testplugin.models import Order
from tocsin_celery_testplugin.recorder import client, record

if os.environ.get("TOCSIN_TEST_WORKER"):
    record("imported")  # lets a test tell whether a worker imported this plugin


def _describe(values: dict[str, Any]) -> dict[str, list[str]]:
    return {key: [type(value).__name__, repr(value)] for key, value in sorted(values.items())}


@receiver(signals.ping)
@deferred
def log_ping(
    sender: Any, signal: Signal, tocsin_message_id: str, tocsin_attempt: int, **named: Any
) -> str:
    record(
        "ping",
        signal=signal.name,
        sender=[type(sender).__name__, repr(sender)],
        named=_describe(named),
        token=named.get("token"),
        message_id=tocsin_message_id,
        attempt=tocsin_attempt,
    )
    return "pong"


# The same dispatch_uid twice: the second never connects, here or in a worker.
@receiver(signals.unique, dispatch_uid="celerytest-unique")
@deferred
def first_unique(token: str, tocsin_message_id: str, **kwargs: Any) -> None:
    record("unique", receiver="first", token=token, message_id=tocsin_message_id)


@receiver(signals.unique, dispatch_uid="celerytest-unique")
@deferred
def second_unique(token: str, tocsin_message_id: str, **kwargs: Any) -> None:
    record("unique", receiver="second", token=token, message_id=tocsin_message_id)


@receiver(signals.order_saved, sender=Order)
@deferred(on_commit=True)
def order_saved(
    sender: Any, instance: Order, token: str, tocsin_message_id: str, **kwargs: Any
) -> None:
    record(
        "order",
        token=token,
        sender=repr(sender),
        instance_type=type(instance).__name__,
        id=instance.id,
        label=instance.label,
        message_id=tocsin_message_id,
    )


@receiver(signals.note_saved)
@deferred(on_commit=True)
def note_saved(
    sender: Any, instance: Any, token: str, tocsin_message_id: str, **kwargs: Any
) -> None:
    record(
        "note",
        token=token,
        sender=type(sender).__name__ + ":" + getattr(sender, "__name__", "?"),
        instance_type=type(instance).__name__,
        pk=instance.pk,
        title=instance.title,
        message_id=tocsin_message_id,
    )


@receiver(signals.flaky)
@deferred(retry=RetryPolicy(max_retries=3, retry_backoff=0.2, retry_jitter=False))
def flaky(
    token: str, fail_times: int, tocsin_message_id: str, tocsin_attempt: int, **kwargs: Any
) -> None:
    record("flaky", token=token, attempt=tocsin_attempt, message_id=tocsin_message_id)
    if tocsin_attempt < fail_times:
        raise RuntimeError(f"flaky failure {tocsin_attempt}")
    record("flaky-ok", token=token, attempt=tocsin_attempt, message_id=tocsin_message_id)


@receiver(signals.doomed)
@deferred(retry=RetryPolicy(max_retries=1, retry_backoff=0.1, retry_jitter=False))
def doomed(token: str, tocsin_attempt: int, **kwargs: Any) -> None:
    record("doomed", token=token, attempt=tocsin_attempt)
    raise ValueError(f"doomed {token}")


@receiver(signals.slow)
@deferred
def slow_once(token: str, tocsin_message_id: str, **kwargs: Any) -> None:
    # The message id is the same on a redelivery: count deliveries by it.
    deliveries = int(client().incr(f"tocsin-test:deliveries:{tocsin_message_id}"))
    record("slow-started", token=token, deliveries=deliveries, message_id=tocsin_message_id)
    if deliveries == 1:
        time.sleep(60)  # the test kills this worker meanwhile
    record("slow-done", token=token, deliveries=deliveries, message_id=tocsin_message_id)


@receiver(signals.asynchronous)
@deferred
async def async_ping(token: str, **kwargs: Any) -> None:
    await asyncio.sleep(0)
    record("async", token=token, loop=type(asyncio.get_running_loop()).__name__)


# Deferred, but connected to no signal: a message naming it must be rejected.
@deferred
def unconnected(**kwargs: Any) -> None:
    record("SHOULD-NOT-RUN", receiver="unconnected")


# Not deferred at all, and not connected: a message naming it must be rejected.
def not_deferred(**kwargs: Any) -> None:
    record("SHOULD-NOT-RUN", receiver="not_deferred")


# The outbox: the test sets the session a send belongs to (the worker never needs it).
outbox_session: contextvars.ContextVar[Any] = contextvars.ContextVar("outbox_session")


@receiver(signals.outboxed)
@deferred(on_commit=True, outbox=True, session=lambda: outbox_session.get())
def outboxed(token: str, tocsin_message_id: str, tocsin_attempt: int, **kwargs: Any) -> None:
    deliveries = int(client().incr(f"tocsin-test:deliveries:{tocsin_message_id}"))
    record("outboxed", token=token, message_id=tocsin_message_id, deliveries=deliveries)
