"""The transactional outbox in a Django project (tocsin.contrib.celery.django_outbox).

Real parts only: Django configured with ``settings.configure()`` in a child process
(``django_outbox_child.py``; this process never configures Django, as in the other
Celery tests), its migration run by ``migrate`` on a SQLite file or on a fresh database
of the PostgreSQL cluster the test session starts, and a real ``redis-server`` that no
worker consumes, so its queue shows exactly what was published (or a port nobody
listens on, for a broker that is down).  This process looks at the same table through
SQLAlchemy, as a SQLAlchemy relay sharing it would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from celery import Celery
from celery_harness import RedisServer, free_port, needs_redis

from tocsin.contrib.celery import install
from tocsin.contrib.celery.outbox import _now, outbox_table, relay_once

pytest.importorskip("django", reason="tocsin[django] needs Django")

CHILD = Path(__file__).parent / "django_outbox_child.py"
BROKER_DB = 7

pytestmark = needs_redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("django-outbox-redis"))
    yield server
    server.stop()


@dataclass
class Project:
    """One Django project's database, and how to run a scenario on it."""

    database: dict[str, Any]
    url: str  # the same database, for SQLAlchemy
    redis: RedisServer

    def run(self, scenario: str, **env: str) -> dict[str, Any]:
        child_env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TOCSIN_", "CELERY_", "DJANGO_"))
        }
        child_env.update(
            TOCSIN_TEST_DJANGO_DATABASE=json.dumps(self.database),
            TOCSIN_TEST_BROKER=self.redis.url(BROKER_DB),
            TOCSIN_TEST_DOWN_BROKER=f"redis://127.0.0.1:{free_port()}/0",
            TOCSIN_PLUGINS="",  # no installed plugin distributions
            **env,
        )
        done = subprocess.run(
            # Naive datetimes given to Django with USE_TZ on would warn: make it an error.
            [sys.executable, "-W", "error::RuntimeWarning", str(CHILD), scenario],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout.splitlines()[-1]))

    def rows(self) -> list[Any]:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(sa.select(outbox_table).order_by(outbox_table.c.id)))
        finally:
            engine.dispose()

    def queue(self) -> list[str]:
        client = type(self.redis.client)(port=self.redis.port, db=BROKER_DB)
        try:
            # Celery LPUSHes onto the list: the oldest message is at its end.
            raws = client.lrange("celery", 0, -1)[::-1]
            return [json.loads(raw)["headers"]["id"] for raw in raws]
        finally:
            client.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def project(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> Iterator[Project]:
    client = type(redis_server.client)(port=redis_server.port, db=BROKER_DB)
    client.delete("celery")
    client.close()
    if request.param == "sqlite":
        path = tmp_path / "django.db"
        yield Project(
            {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)},
            f"sqlite:///{path}",
            redis_server,
        )
        return
    server = sa.make_url(request.getfixturevalue("postgresql_url"))
    name = f"django_outbox_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield Project(
            {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": name,
                "USER": server.username,
                "HOST": server.host,
                "PORT": server.port,
            },
            str(server.set(database=name)),
            redis_server,
        )
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _insert_rows(url: str, count: int) -> list[str]:
    """Due rows written through SQLAlchemy, as the SQLAlchemy side of an app would."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                outbox_table.insert(),
                [
                    {
                        "message_id": message_id,
                        "task_name": "tocsin.deliver",
                        "envelope": json.dumps(
                            {
                                "tocsin": 1,
                                "signal": "djangooutbox.paid",
                                "receiver": "x:y",
                                "sender": None,
                                "named": {"token": f"row-{i}"},
                            }
                        ),
                        "options": "{}",
                        "created": _now(),
                        "attempts": 0,
                        "next_attempt_at": _now(),
                    }
                    for i, message_id in enumerate(ids)
                ],
            )
    finally:
        engine.dispose()
    return ids


def test_migrate_creates_the_table_sqlalchemy_uses(project: Project) -> None:
    project.run("migrate")
    engine = sa.create_engine(project.url)
    try:
        inspector = sa.inspect(engine)
        columns = {column["name"]: column for column in inspector.get_columns("tocsin_outbox")}
        assert set(columns) == {column.name for column in outbox_table.columns}
        for name in ("created", "next_attempt_at", "claimed_until", "published_at"):
            kind = columns[name]["type"]
            assert isinstance(kind, sa.DateTime), (name, kind)
            assert not kind.timezone, name  # naive UTC, as SQLAlchemy's DateTime
        assert [c["nullable"] for c in (columns["claimed_by"], columns["message_id"])] == [
            True,
            False,
        ]
        indexes = {
            index["name"]: index["column_names"] for index in inspector.get_indexes("tocsin_outbox")
        }
        assert indexes["ix_tocsin_outbox_pending"] == ["published_at", "next_attempt_at"]
    finally:
        engine.dispose()
    # Shared: a row SQLAlchemy wrote, published by the Django beat task.
    [message_id] = _insert_rows(project.url, 1)
    assert project.run("beat") == {"published": 1, "queue": [message_id], "left": 0}


def test_sends_commit_and_roll_back_with_the_atomic_block(project: Project) -> None:
    sent = project.run("send")
    assert sent["dropped"] not in sent["queue"]
    assert sent["queue"][-1] == sent["kept"]
    assert len(sent["queue"]) == 3  # the outer send, the ping, the kept one
    assert project.queue() == sent["queue"]
    [row] = project.rows()  # the kept one, as SQLAlchemy reads it
    assert (row.message_id, row.claimed_by) == (sent["kept"], None)
    assert row.published_at is not None
    assert row.published_at <= _now()  # naive UTC, as SQLAlchemy's side writes it


def test_broker_down_keeps_the_row_and_the_relay_publishes_it(project: Project) -> None:
    message_id = project.run("down")["message_id"]
    [row] = project.rows()
    assert (row.message_id, row.attempts, row.claimed_by, row.published_at) == (
        message_id,
        2,
        None,
        None,
    )
    assert row.created <= _now()  # Django wrote naive UTC, as SQLAlchemy does
    engine = sa.create_engine(project.url)
    try:
        with engine.begin() as connection:
            connection.execute(outbox_table.update().values(next_attempt_at=_now()))
    finally:
        engine.dispose()
    relayed = project.run("command")
    assert relayed["stdout"].strip() == "published 1"
    assert relayed == {"stdout": relayed["stdout"], "queue": [message_id], "left": 0}


def test_a_sqlalchemy_relay_publishes_what_django_left_pending(
    project: Project, redis_server: RedisServer
) -> None:
    message_id = project.run("down")["message_id"]
    engine = sa.create_engine(project.url)
    app = Celery(
        "django-outbox-sqlalchemy", broker=redis_server.url(BROKER_DB), set_as_current=False
    )
    install(app, plugins=False)
    try:
        with engine.begin() as connection:
            connection.execute(outbox_table.update().values(next_attempt_at=_now()))
        assert relay_once(engine, app) == 1
    finally:
        app.close()
        engine.dispose()
    assert project.queue() == [message_id]
    assert project.rows() == []


def test_two_relays_publish_each_row_once(project: Project) -> None:
    project.run("migrate")
    count = 300
    ids = _insert_rows(project.url, count)
    relayed = project.run("relays")
    assert relayed["left"] == 0
    assert sum(relayed["published"]) == count
    assert all(relayed["published"]), relayed["published"]  # both relays took part
    seen = Counter(relayed["queue"])
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1  # none published twice


@pytest.mark.parametrize(
    ("installed", "expected"),
    [("0", "is not in INSTALLED_APPS"), ("1", "has no tocsin_outbox table")],
)
def test_clear_errors_without_the_app_or_its_table(
    project: Project, installed: str, expected: str
) -> None:
    error = project.run("errors", TOCSIN_TEST_OUTBOX_APP=installed)["error"]
    assert "__main__:on_paid writes to the outbox" in error
    assert expected in error
    assert "migrate" in error
