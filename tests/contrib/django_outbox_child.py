"""A Django process for tests/contrib/test_celery_outbox_django.py: Django configured
here with ``settings.configure()`` (never in the pytest process, whose deferred
receivers must not start waiting for Django commits), on the database the test gives.

``python django_outbox_child.py SCENARIO``; the environment says where the database
(``TOCSIN_TEST_DJANGO_DATABASE``, a JSON ``DATABASES["default"]``) and the brokers are
(``TOCSIN_TEST_BROKER``, a redis-server nobody consumes; ``TOCSIN_TEST_DOWN_BROKER``, a
port nobody listens on).  A scenario checks what it can itself (an AssertionError
fails the run) and prints what the test checks further as JSON, on the last line.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import django
from django.conf import settings

WITH_APP = os.environ.get("TOCSIN_TEST_OUTBOX_APP", "1") == "1"

settings.configure(
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        *(["tocsin.contrib.celery.django_outbox"] if WITH_APP else []),
    ],
    DATABASES={"default": json.loads(os.environ["TOCSIN_TEST_DJANGO_DATABASE"])},
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    USE_TZ=True,
)
django.setup()

import redis  # noqa: E402
from celery import Celery  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections, transaction  # noqa: E402

from tocsin import Signal, receiver  # noqa: E402
from tocsin.contrib.celery import DeferredConfigurationError, deferred, install  # noqa: E402
from tocsin.contrib.celery.django_outbox import (  # noqa: E402
    relay_once,
    relay_task,
    wait_settled,
)

paid = Signal(name="djangooutbox.paid")
ping = Signal(name="djangooutbox.ping")


@receiver(paid)
@deferred(on_commit=True, outbox=True)
def on_paid(**kwargs: Any) -> None:
    """Never runs: nothing consumes the test's broker."""


@receiver(ping)
@deferred(on_commit="django", outbox=True)
def on_ping(**kwargs: Any) -> None:
    """Never runs either."""


def make_app(broker: str, **conf: Any) -> Any:
    app = Celery("django-outbox", broker=broker, set_as_current=False)
    app.conf.update(broker_connection_retry=False, broker_connection_max_retries=0, **conf)
    install(app, plugins=False)
    return app


def queue() -> list[str]:
    """The ids of the messages on the test broker's queue, in order."""
    client = redis.Redis.from_url(os.environ["TOCSIN_TEST_BROKER"])
    try:
        # Celery LPUSHes onto the list: the oldest message is at its end.
        raws = client.lrange("celery", 0, -1)[::-1]
        return [json.loads(raw)["headers"]["id"] for raw in raws]
    finally:
        client.close()


def outbox() -> list[Any]:
    from tocsin.contrib.celery.django_outbox.models import OutboxMessage

    return list(OutboxMessage.objects.order_by("id"))


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Rollback(Exception):
    pass


def new_instance(name: str) -> Any:
    return ContentType.objects.create(app_label="shop", model=name)


def migrate() -> dict[str, Any]:
    call_command("migrate", verbosity=0)
    # The model and its migration agree: makemigrations has nothing to write.
    try:
        call_command(
            "makemigrations", "tocsin_outbox", check=True, dry_run=True, stdout=io.StringIO()
        )
    except SystemExit as exit:
        raise AssertionError("makemigrations found changes for tocsin_outbox") from exit
    return {}


def send() -> dict[str, Any]:
    migrate()
    app = make_app(os.environ["TOCSIN_TEST_BROKER"])
    app.set_current()
    out: dict[str, Any] = {}

    # Rolled back: no data, no outbox row, nothing published.
    try:
        with transaction.atomic():
            order = new_instance("never")
            [(_, result)] = paid.send(sender=ContentType, instance=order)
            [row] = outbox()  # written in the caller's transaction
            assert row.message_id == result.id
            assert json.loads(row.envelope)["named"]["instance"]
            assert queue() == []
            raise Rollback
    except Rollback:
        pass
    assert outbox() == []
    assert not ContentType.objects.filter(model="never").exists()
    assert queue() == []

    # A savepoint rolled back drops its send; the outer one is published after commit.
    with transaction.atomic():
        outer = new_instance("outer")
        [(_, kept)] = paid.send(sender=ContentType, instance=outer)
        try:
            with transaction.atomic():
                inner = new_instance("inner")
                [(_, dropped)] = paid.send(sender=ContentType, instance=inner)
                raise Rollback
        except Rollback:
            pass
        assert len(outbox()) == 1
        assert queue() == []  # not before the commit
    assert queue() == [kept.id]
    assert wait_settled()  # the DELETE runs off the sender's path, in a thread
    assert outbox() == []  # published, then deleted
    out["dropped"] = dropped.id

    # on_commit="django" with no model instance: the default database's transaction.
    with transaction.atomic():
        [(_, pinged)] = ping.send(sender=None, token="x")
    assert queue() == [kept.id, pinged.id]
    assert wait_settled()
    assert outbox() == []

    # Kept when the app says so, stamped as published; a relay leaves it alone.
    app.conf.tocsin_outbox_keep_published = 3600
    with transaction.atomic():
        [(_, stamped)] = paid.send(sender=ContentType, instance=new_instance("kept"))
    assert wait_settled()
    [row] = outbox()
    assert (row.message_id, row.claimed_by) == (stamped.id, None)
    assert row.published_at is not None
    assert relay_once(app) == 0
    out["queue"] = queue()
    out["kept"] = stamped.id
    return out


def down() -> dict[str, Any]:
    migrate()
    down_app = make_app(os.environ["TOCSIN_TEST_DOWN_BROKER"], tocsin_publish_timeout=0.5)
    down_app.set_current()
    started = time.monotonic()
    with transaction.atomic():
        [(_, result)] = paid.send(sender=ContentType, instance=new_instance("paid"))
    took = time.monotonic() - started
    assert took < 5, took  # the publish after the commit waited its timeout at most
    # Still the sender's until its late publish fails; then pending, attempt counted.
    wait_until(lambda: outbox()[0].claimed_by is None, 20, "the late publish to fail")
    [row] = outbox()
    assert (row.message_id, row.attempts, row.published_at) == (result.id, 1, None)
    # The Django relay on the broker that is still down: one more attempt, put off.
    assert relay_once(down_app, backoff=60) == 0
    wait_until(lambda: outbox()[0].claimed_by is None, 20, "the relay's publish to fail")
    [row] = outbox()
    assert row.attempts == 2
    assert row.next_attempt_at > row.created + datetime.timedelta(seconds=30)
    up_app = make_app(os.environ["TOCSIN_TEST_BROKER"])
    assert relay_once(up_app) == 0  # not due yet
    assert queue() == []
    return {"message_id": result.id}


def command() -> dict[str, Any]:
    """``manage.py tocsin_relay --once``, publishing with Celery's current app."""
    make_app(os.environ["TOCSIN_TEST_BROKER"]).set_current()
    out = io.StringIO()
    call_command("tocsin_relay", "--once", stdout=out)
    return {"stdout": out.getvalue(), "queue": queue(), "left": len(outbox())}


def beat() -> dict[str, Any]:
    app = make_app(os.environ["TOCSIN_TEST_BROKER"])
    task = relay_task(app, name="test.django_outbox_relay")
    assert task.name == "test.django_outbox_relay"
    return {"published": task.apply().get(), "queue": queue(), "left": len(outbox())}


def relays() -> dict[str, Any]:
    """Two relays at once, each in a thread with its own connection."""
    app = make_app(os.environ["TOCSIN_TEST_BROKER"])
    published = [0, 0]
    errors: list[BaseException] = []

    def relay(index: int) -> None:
        from tocsin.contrib.celery.django_outbox.models import OutboxMessage

        try:
            while OutboxMessage.objects.filter(published_at__isnull=True).exists():
                published[index] += relay_once(app, batch=10, relay_id=f"relay-{index}")
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=relay, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [], errors
    return {"published": published, "queue": queue(), "left": len(outbox())}


def errors() -> dict[str, Any]:
    """What a send says when the app is not installed, or its table is missing."""
    if WITH_APP:
        call_command("migrate", "contenttypes", verbosity=0)  # not tocsin_outbox
    else:
        call_command("migrate", verbosity=0)
    make_app(os.environ["TOCSIN_TEST_BROKER"]).set_current()
    try:
        with transaction.atomic():
            paid.send(sender=ContentType, instance=new_instance("paid"))
    except DeferredConfigurationError as error:
        return {"error": str(error)}
    raise AssertionError("the send did not raise")


SCENARIOS = {f.__name__: f for f in (migrate, send, down, command, beat, relays, errors)}

if __name__ == "__main__":
    result = SCENARIOS[sys.argv[1]]()
    connections.close_all()
    print(json.dumps(result))
