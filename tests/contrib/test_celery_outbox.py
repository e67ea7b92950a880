"""The transactional outbox of deferred receivers (tocsin.contrib.celery.outbox).

The first tests run in this process against SQLite and a Celery app whose broker is
the in-memory transport (or a port nobody listens on, for a broker that is down).  The
others use real parts: a real ``redis-server`` (which one test stops with SIGSTOP in
the middle of the sends, then resumes with SIGCONT), the real prefork worker of
celery_harness.py, and SQLite and PostgreSQL databases.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from celery import Celery
from celery_harness import (  # noqa: F401 (fixtures are found by name)
    EVENTS,
    CeleryEnv,
    Events,
    RedisServer,
    Worker,
    celery_env_fixture,
    events_fixture,
    free_port,
    main_worker_fixture,
    needs_redis,
    wait_until,
)
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tocsin import Signal
from tocsin.contrib.celery import DeferredConfigurationError, connect_deferred, deferred, install
from tocsin.contrib.celery.migrations import VERSIONS_DIR
from tocsin.contrib.celery.outbox import (
    _now,
    create_outbox_table,
    outbox_table,
    relay_once,
    relay_task,
    wait_settled,
)


class Base(DeclarativeBase):
    pass


class Invoice(Base):
    __tablename__ = "outbox_invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(50))


def record(**kwargs: Any) -> None:
    """The deferred function (it never runs here: nothing consumes these brokers)."""


def rows(engine: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(outbox_table).order_by(outbox_table.c.id)))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    Base.metadata.create_all(engine)
    create_outbox_table(engine)
    yield engine
    engine.dispose()


def make_app(broker: str, **conf: Any) -> Any:
    app = Celery("tocsin-outbox", broker=broker, set_as_current=False)
    app.conf.update(broker_connection_retry=False, broker_connection_max_retries=0, **conf)
    install(app, plugins=False)
    return app


@pytest.fixture
def memory_app() -> Iterator[Any]:
    app = make_app("memory://")
    yield app
    app.close()


@pytest.fixture
def down_app() -> Iterator[Any]:
    app = make_app(f"redis://127.0.0.1:{free_port()}/0", tocsin_publish_timeout=0.5)
    yield app
    app.close()


def outboxed(app: Any) -> tuple[Signal, Any]:
    sig = Signal(name=f"outbox.test.{uuid.uuid4().hex[:8]}")
    proxy = connect_deferred(sig, deferred(record, app=app, on_commit=True, outbox=True))
    return sig, proxy


def test_outbox_needs_on_commit_and_a_session(memory_app: Any) -> None:
    with pytest.raises(ValueError, match="on_commit"):
        deferred(record, app=memory_app, outbox=True)
    with pytest.raises(ValueError, match="JSON"):
        deferred(record, on_commit=True, outbox=True, options={"link": object()})
    sig, _ = outboxed(memory_app)
    with pytest.raises(DeferredConfigurationError, match=r"session=.*Django is not configured"):
        sig.send(sender=None, token="x")
    # Django's transaction (tests/contrib/test_celery_outbox_django.py): not configured here.
    django_sig = Signal(name=f"outbox.test.{uuid.uuid4().hex[:8]}")
    connect_deferred(django_sig, deferred(record, app=memory_app, on_commit="django", outbox=True))
    with pytest.raises(DeferredConfigurationError, match=r"Django transaction.*not configured"):
        django_sig.send(sender=None, token="x")


def test_rolled_back_send_leaves_nothing(engine: Any, memory_app: Any) -> None:
    sig, _ = outboxed(memory_app)
    with Session(engine) as session:
        invoice = Invoice(label="never")
        session.add(invoice)
        session.flush()
        sig.send(sender=Invoice, instance=invoice)
        session.rollback()
    assert rows(engine) == []
    with Session(engine) as session:
        session.add(outer := Invoice(label="outer"))
        session.flush()
        savepoint = session.begin_nested()
        session.add(inner := Invoice(label="inner"))
        session.flush()
        sig.send(sender=Invoice, instance=inner, token="inner")
        savepoint.rollback()
        [(_, kept)] = sig.send(sender=Invoice, instance=outer, token="outer")
        session.commit()
    assert wait_settled()
    assert rows(engine) == []  # the outer one was published and deleted
    assert kept.id


def test_committed_send_is_published_then_deleted_or_kept(engine: Any, memory_app: Any) -> None:
    sig, _ = outboxed(memory_app)
    with Session(engine) as session:
        session.add(invoice := Invoice(label="paid"))
        session.flush()
        [(_, result)] = sig.send(sender=Invoice, instance=invoice)
        [row] = session.execute(sa.select(outbox_table)).all()  # in its transaction
        assert rows(engine) == []  # not committed yet
        assert row.message_id == result.id
        envelope = json.loads(row.envelope)
        assert envelope["signal"] == sig.name
        assert "instance" in envelope["named"]
        session.commit()
    assert wait_settled()  # the DELETE runs off the sender's path, in a thread
    assert rows(engine) == []

    memory_app.conf.tocsin_outbox_keep_published = 3600
    try:
        with Session(engine) as session:
            session.add(invoice := Invoice(label="kept"))
            session.flush()
            [(_, result)] = sig.send(sender=Invoice, instance=invoice)
            session.commit()
        assert wait_settled()
        [row] = rows(engine)
        assert (row.message_id, row.claimed_by) == (result.id, None)
        assert row.published_at is not None
        assert relay_once(engine, memory_app) == 0  # published rows are not relayed again
    finally:
        memory_app.conf.tocsin_outbox_keep_published = None


def test_broker_down_keeps_the_row_and_the_relay_publishes_it(
    engine: Any, down_app: Any, memory_app: Any
) -> None:
    sig, _ = outboxed(down_app)
    started = time.monotonic()
    with Session(engine) as session:
        session.add(invoice := Invoice(label="paid"))
        session.flush()
        [(_, result)] = sig.send(sender=Invoice, instance=invoice)
        session.commit()  # the publish fails after it, within the publish timeout
    assert time.monotonic() - started < 5
    # The publish was still retrying when the sender stopped waiting: the row is the
    # sender's until that publish ends (then released, as failed) or the claim expires.
    wait_until(lambda: rows(engine)[0].claimed_by is None, 20, "the late publish to fail")
    [row] = rows(engine)
    assert (row.message_id, row.attempts, row.claimed_by, row.published_at) == (
        result.id,
        1,
        None,
        None,
    )
    # A relay on the broker that is still down: the attempt is counted, with backoff.
    assert relay_once(engine, down_app, backoff=60) == 0
    wait_until(lambda: rows(engine)[0].claimed_by is None, 20, "the relay's publish to fail")
    [row] = rows(engine)
    assert row.attempts == 2
    assert row.next_attempt_at > row.created + datetime.timedelta(seconds=30)
    assert relay_once(engine, memory_app) == 0  # not due yet
    with engine.begin() as connection:
        connection.execute(outbox_table.update().values(next_attempt_at=_now()))
    assert relay_once(engine, memory_app) == 1
    assert rows(engine) == []


def test_after_a_failed_publish_senders_leave_their_rows_to_the_relay(
    engine: Any, down_app: Any, memory_app: Any
) -> None:
    sig, _ = outboxed(down_app)

    def send(label: str) -> tuple[float, str]:
        started = time.monotonic()
        with Session(engine) as session:
            session.add(invoice := Invoice(label=label))
            session.flush()
            [(_, result)] = sig.send(sender=Invoice, instance=invoice)
            session.commit()
        return time.monotonic() - started, result.id

    first_took, first = send("first")
    assert first_took >= 0.5  # it waited its publish timeout (0.5 s) for the broker
    second_took, second = send("second")  # the broker rests: nothing is tried
    assert second_took < 0.4
    wait_until(lambda: rows(engine)[0].claimed_by is None, 20, "the late publish to fail")
    by_id = {row.message_id: row for row in rows(engine)}
    assert (by_id[first].attempts, by_id[second].attempts) == (1, 0)
    assert by_id[second].claimed_by is None  # the relay may take it at once
    time.sleep(0.6)  # the rest (0.5 s after one failure) is over: the next send tries
    third_took, _ = send("third")
    assert third_took >= 0.5
    with engine.begin() as connection:
        connection.execute(outbox_table.update().values(next_attempt_at=_now()))
    wait_until(lambda: all(r.claimed_by is None for r in rows(engine)), 20, "the publishes to end")
    assert relay_once(engine, memory_app) == 3
    assert rows(engine) == []


def test_relay_task_for_celery_beat(engine: Any, down_app: Any, memory_app: Any) -> None:
    sig, _ = outboxed(down_app)
    with Session(engine) as session:
        session.add(invoice := Invoice(label="paid"))
        session.flush()
        sig.send(sender=Invoice, instance=invoice)
        session.commit()
    wait_until(lambda: rows(engine)[0].claimed_by is None, 20, "the late publish to fail")
    task = relay_task(memory_app, str(engine.url), name="test.outbox_relay")
    assert task.name == "test.outbox_relay"
    assert task.apply().get() == 1
    assert rows(engine) == []


@pytest.fixture
def existing_loggers_kept() -> Iterator[None]:
    """The env.py that ``alembic init`` writes calls ``logging.config.fileConfig``, which
    disables every logger that exists (tocsin's among them) for the rest of the
    process; put them back, so that later tests still see tocsin's log records."""
    loggers = [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    disabled = [logger.disabled for logger in loggers]
    yield
    for logger, was in zip(loggers, disabled, strict=True):
        logger.disabled = was


@pytest.mark.usefixtures("existing_loggers_kept")
def test_alembic_revision_creates_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    command.init(Config(str(tmp_path / "alembic.ini")), str(tmp_path / "migrations"))
    config = Config(str(tmp_path / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    # alembic.ini's path_separator is "os": the folders are joined with os.pathsep.
    versions = os.pathsep.join([str(tmp_path / "migrations" / "versions"), VERSIONS_DIR])
    config.set_main_option("version_locations", versions)
    command.upgrade(config, "tocsin_outbox@head")
    engine = create_engine(url)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("tocsin_outbox")}
        assert {c.name for c in outbox_table.columns} == columns
        command.downgrade(config, "tocsin_outbox@base")
        assert not sa.inspect(engine).has_table("tocsin_outbox")
    finally:
        engine.dispose()


def test_cli_relay_says_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "shop_app.py").write_text(
        'from celery import Celery\napp = Celery("shop", broker="memory://")\n'
    )
    database = f"sqlite:///{tmp_path / 'empty.db'}"

    def relay(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tocsin", "relay", "--once", *arguments],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    cases = [
        (("--database", database, "--app", "no_such_module:app"), 2, "No module named"),
        (("--database", database, "--app", "tocsin:plugins"), 2, "not a Celery app"),
        (("--database", "nosuchdb://x", "--app", "shop_app"), 2, "nosuchdb"),
        (("--database", database, "--app", "shop_app"), 1, "Create the table"),
    ]
    for arguments, status, says in cases:
        result = relay(*arguments)
        assert result.returncode == status, (arguments, result.stderr)
        assert says in result.stderr, (arguments, result.stderr)
        assert "Traceback" not in result.stderr, (arguments, result.stderr)


# -- real parts: redis-server, the prefork worker, SQLite and PostgreSQL ------------------


def _database(kind: str, celery_env: CeleryEnv, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{celery_env.tmp / f'outbox-{uuid.uuid4().hex[:6]}.db'}"
    return str(request.getfixturevalue("postgresql_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def outbox_engine(request: pytest.FixtureRequest, celery_env: CeleryEnv) -> Iterator[Any]:
    url = _database(request.param, celery_env, request)
    engine = create_engine(url)
    with engine.begin() as connection:
        outbox_table.drop(connection, checkfirst=True)
    create_outbox_table(engine)
    yield engine
    engine.dispose()


def _send_committed(engine: Any, token: str, *, commit: bool = True) -> None:
    from tocsin_celery_testplugin import signals
    from tocsin_celery_testplugin.receivers import outbox_session

    with Session(engine) as session:
        session.execute(sa.text("SELECT 1"))
        reset = outbox_session.set(session)
        try:
            signals.outboxed.send(sender=None, token=token)
        finally:
            outbox_session.reset(reset)
        if commit:
            session.commit()
        else:
            session.rollback()


def _pending(engine: Any) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count()).where(outbox_table.c.published_at.is_(None))
            ).scalar_one()
        )


#: Committed sends per outage test: the 10,000 of issue 15; `make test-pythons`, which
#: runs the suite again on the other interpreters, asks for fewer.
OUTAGE_SENDS = int(os.environ.get("TOCSIN_TEST_OUTAGE_SENDS", "10000"))
#: How long the broker is stopped or dead, in the middle of the burst.
OUTAGE_SECONDS = 4.0
#: Every this many sends, one transaction is rolled back instead of committed.
ROLLBACK_EVERY = 97


@dataclass
class Burst:
    """What one burst of committed sends did across a broker outage."""

    committed: list[str]
    rolled_back: list[str]
    during_outage: int = 0


def _burst(
    engine: Any, run: str, break_broker: Callable[[], None], heal: Callable[[], None]
) -> Burst:
    """OUTAGE_SENDS sends in their own transactions; before the tenth of them the broker
    is broken, and a timer heals it OUTAGE_SECONDS later while the sends go on."""
    burst = Burst([], [])
    healed = threading.Event()
    healer: threading.Timer | None = None

    def heal_now() -> None:
        heal()
        healed.set()

    try:
        for i in range(OUTAGE_SENDS):
            if i == OUTAGE_SENDS // 10:
                break_broker()
                healer = threading.Timer(OUTAGE_SECONDS, heal_now)
                healer.start()
            elif healer is not None and not healed.is_set():
                burst.during_outage += 1
            token = f"{run}-{i}"
            if i % ROLLBACK_EVERY == ROLLBACK_EVERY - 1:
                _send_committed(engine, token, commit=False)
                burst.rolled_back.append(token)
            else:
                _send_committed(engine, token)
                burst.committed.append(token)
    finally:
        if healer is not None:
            healer.join()
    return burst


def _deliveries(client: Any, run: str) -> dict[str, list[dict[str, Any]]]:
    """The test receiver's deliveries in this run, by token."""
    found: dict[str, list[dict[str, Any]]] = {}
    for raw in client.lrange(EVENTS, 0, -1):
        event = json.loads(raw)
        if event["kind"] == "outboxed" and event["token"].startswith(f"{run}-"):
            found.setdefault(event["token"], []).append(event)
    return found


@contextlib.contextmanager
def _relay_running(engine: Any, app: Any) -> Iterator[list[int]]:
    """A relay publishing what is pending, in a thread, as `tocsin relay` would."""
    stop = threading.Event()
    published = [0]

    def relay() -> None:
        while not stop.is_set():
            try:
                published[0] += relay_once(engine, app, batch=500, backoff=0.2, max_backoff=1.0)
            except Exception:
                logging.getLogger(__name__).exception("relay pass failed")
            stop.wait(0.2)

    thread = threading.Thread(target=relay, name="test-relay")
    thread.start()
    try:
        yield published
    finally:
        stop.set()
        thread.join(60)


def _check_delivered(
    engine: Any, client: Any, run: str, burst: Burst, relayed: list[int], what: str
) -> None:
    """Every committed send delivered at least once, with one message id; none of the
    rolled-back ones; the outbox empty.  Prints the counts for the issue's note."""
    expected = set(burst.committed)

    def complete() -> bool:
        return expected <= _deliveries(client, run).keys() and _pending(engine) == 0

    try:
        wait_until(complete, 300, f"{len(expected)} deliveries after the {what}", interval=0.5)
    except AssertionError as error:
        missing = sorted(expected - _deliveries(client, run).keys())
        raise AssertionError(
            f"{error}: {len(missing)} missing (first: {missing[:5]}), outbox rows "
            f"{rows(engine)[:5]} ({_pending(engine)} pending)"
        ) from None
    time.sleep(1)  # late duplicates, if any, have arrived
    delivered = _deliveries(client, run)
    assert not set(burst.rolled_back) & delivered.keys()
    assert delivered.keys() == expected
    for seen in delivered.values():
        assert len({event["message_id"] for event in seen}) == 1, seen
    duplicates = sum(len(seen) - 1 for seen in delivered.values())
    assert rows(engine) == []
    print(
        f"outbox, {what}, {engine.dialect.name}: {len(expected)} committed sends "
        f"({burst.during_outage} while the broker was out), {len(burst.rolled_back)} "
        f"rolled back; 0 lost, {duplicates} duplicates, {relayed[0]} published by the relay"
    )


@needs_redis
class TestRealBroker:
    def test_broker_stopped_in_a_burst_loses_nothing(
        self,
        celery_env: CeleryEnv,
        events: Events,
        outbox_engine: Any,
    ) -> None:
        app = celery_env.app(0)
        app.conf.tocsin_publish_timeout = 0.3
        run = uuid.uuid4().hex[:8]
        pid = celery_env.redis.process.pid
        try:
            with _relay_running(outbox_engine, app) as relayed:
                started = time.monotonic()
                burst = _burst(
                    outbox_engine,
                    run,
                    lambda: os.kill(pid, signal.SIGSTOP),
                    lambda: os.kill(pid, signal.SIGCONT),
                )
                took = time.monotonic() - started
                _check_delivered(
                    outbox_engine, events.client, run, burst, relayed, "broker SIGSTOPped"
                )
            # The sends did not each wait out the publish timeout while it was stopped.
            assert burst.during_outage > 10 * OUTAGE_SECONDS, burst.during_outage
            print(f"burst of {OUTAGE_SENDS} sends took {took:.1f} s")
        finally:
            os.kill(pid, signal.SIGCONT)
            app.conf.tocsin_publish_timeout = None

    def test_broker_killed_in_a_burst_loses_nothing(
        self,
        celery_env: CeleryEnv,
        outbox_engine: Any,
    ) -> None:
        # A broker of its own, which keeps what it took in an append-only file: the
        # outbox covers the way to the broker, the broker keeps what it acknowledged.
        # Killing the module's broker instead would leave this process's result
        # backends retrying for minutes.  The worker starts once the broker is back:
        # Redis dying while a worker pops a message can lose that one message (kombu
        # records it as unacknowledged in a second step), which no outbox can prevent;
        # the docs say so.
        from tocsin_celery_testplugin.apps import make_app as make_test_app

        broker = RedisServer(celery_env.tmp / f"redis-{uuid.uuid4().hex[:6]}", durable=True)
        app = make_test_app(broker.url(0))
        app.conf.result_backend = None  # the sender needs no results: nothing subscribes
        app.conf.tocsin_publish_timeout = 0.3
        install(app, plugins=False)
        worker: Worker | None = None
        run = uuid.uuid4().hex[:8]
        try:
            app.set_current()
            with _relay_running(outbox_engine, app) as relayed:
                burst = _burst(outbox_engine, run, broker.kill, broker.restart)
                worker = Worker(
                    "killed",
                    app,
                    celery_env.worker_env(0, TOCSIN_TEST_BROKER=broker.url(0)),
                    celery_env.tmp,
                )
                worker.wait_ready(60)
                _check_delivered(
                    outbox_engine,
                    celery_env.redis.client,
                    run,
                    burst,
                    relayed,
                    "broker SIGKILLed and restarted",
                )
            assert burst.during_outage > 10 * OUTAGE_SECONDS, burst.during_outage
        finally:
            if worker is not None:
                worker.stop()
            app.close()
            broker.stop()
            celery_env.app(0)

    def test_two_relays_publish_each_row_once(
        self,
        celery_env: CeleryEnv,
        outbox_engine: Any,
    ) -> None:
        # Broker database 5: no worker consumes it, so the queue shows what was published.
        from tocsin_celery_testplugin.apps import make_app as make_test_app

        app = make_test_app(celery_env.redis.url(5))
        install(app, plugins=False)
        client = celery_env.redis.client
        queue_client = type(client)(port=celery_env.redis.port, db=5)
        queue_client.delete("celery")
        try:
            count = 300
            with outbox_engine.begin() as connection:
                connection.execute(
                    outbox_table.insert(),
                    [
                        {
                            "message_id": str(uuid.uuid4()),
                            "task_name": "tocsin.deliver",
                            "envelope": json.dumps(
                                {
                                    "tocsin": 1,
                                    "signal": "celerytest.outboxed",
                                    "receiver": "x:y",
                                    "sender": None,
                                    "named": {"token": f"relay-{i}"},
                                }
                            ),
                            "options": "{}",
                            "created": _now(),
                            "attempts": 0,
                            "next_attempt_at": _now(),
                        }
                        for i in range(count)
                    ],
                )
            published = [0, 0]
            errors: list[BaseException] = []

            def relay(index: int) -> None:
                try:
                    while _pending(outbox_engine):
                        published[index] += relay_once(
                            outbox_engine, app, batch=10, relay_id=f"relay-{index}"
                        )
                except BaseException as error:
                    errors.append(error)

            threads = [threading.Thread(target=relay, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert errors == []
            assert sum(published) == count
            assert all(published), published  # both relays took part
            ids = Counter(
                json.loads(raw)["headers"]["id"] for raw in queue_client.lrange("celery", 0, -1)
            )
            assert len(ids) == count
            assert max(ids.values()) == 1  # none published twice
        finally:
            queue_client.delete("celery")
            queue_client.close()
            app.close()

    def test_cli_relay(self, celery_env: CeleryEnv, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'cli.db'}"
        engine = create_engine(url)
        create_outbox_table(engine)
        with engine.begin() as connection:
            connection.execute(
                outbox_table.insert().values(
                    message_id=str(uuid.uuid4()),
                    task_name="tocsin.deliver",
                    envelope=json.dumps(
                        {"tocsin": 1, "signal": "s", "receiver": "r", "sender": None, "named": {}}
                    ),
                    options="{}",
                    created=_now(),
                    attempts=0,
                    next_attempt_at=_now(),
                )
            )
        env = celery_env.worker_env(6)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tocsin",
                "relay",
                "--database",
                url,
                "--app",
                "tocsin_celery_testplugin.worker:app",
                "--once",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "published 1" in result.stdout
        assert rows(engine) == []
        engine.dispose()
