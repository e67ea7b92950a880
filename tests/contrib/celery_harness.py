"""A real Redis server and real Celery workers, for tests/contrib/test_celery.py.

Nothing here is mocked: ``redis-server`` runs on a free port of 127.0.0.1 in a
temporary folder, without persistence; the test plugin distribution
(``celery_plugin/``) is built by pip into a temporary target folder; each worker is a
``celery worker --pool=prefork`` subprocess of the venv's Python, in its own process
group, with that folder on its PYTHONPATH.  Everything started is killed at teardown.

The fixtures are imported by the test module explicitly (pytest only honours
``pytest_plugins`` in the root conftest); their functions are named ``*_fixture`` so
that test arguments do not shadow an imported name.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tocsin.testing import pip_install

REDIS_SERVER = shutil.which("redis-server")
PLUGIN_SOURCE = Path(__file__).parent / "celery_plugin"
EVENTS = "tocsin-test:events"

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server is not on PATH: the Celery tests need a real broker "
    "(apt-get install redis-server)",
)

#: A module a forged message names: importing it leaves a marker file behind.
EVIL_MODULE = """\
import os, pathlib
pathlib.Path(os.environ["TOCSIN_TEST_MARKERS"], "evil-imported").touch()

class Thing:
    pass

def run(**kwargs):
    pathlib.Path(os.environ["TOCSIN_TEST_MARKERS"], "evil-ran").touch()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _kill_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)  # the group this test started (start_new_session)


class RedisServer:
    """``redis-server`` on a free port of 127.0.0.1; no persistence unless *durable*
    (then an append-only file, synced on every write: what it took survives a kill)."""

    def __init__(self, directory: Path, *, durable: bool = False) -> None:
        assert REDIS_SERVER is not None
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self._log = open(directory / "redis.log", "wb")  # noqa: SIM115 (closed in stop)
        self.argv = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if durable else "no",
            "--appendfsync",
            "always",
            "--dir",
            str(directory),
        ]
        self.process = self._start()
        import redis

        self.client = redis.Redis(port=self.port, socket_timeout=5)
        try:
            wait_until(self._pong, 10, "redis-server to answer PING")
        except BaseException:
            self.stop()
            raise

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self) -> None:
        """SIGKILL the server (it keeps only what a durable one wrote to its file)."""
        _kill_group(self.process, signal.SIGKILL)
        self.process.wait(10)

    def restart(self) -> None:
        """Start it again on the same port, after :meth:`kill`."""
        self.process = self._start()
        wait_until(self._pong, 10, "redis-server to answer PING again")

    def _pong(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}")
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.client.close()
        _kill_group(self.process, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()


class Worker:
    """One ``celery worker`` subprocess (prefork, one child) of the test plugin's app."""

    def __init__(self, name: str, app: Any, env: dict[str, str], directory: Path) -> None:
        self.name = name
        self.app = app
        self.hostname = f"{name}@{socket.gethostname()}"
        self.log_path = directory / f"worker-{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tocsin_celery_testplugin.worker",
                "worker",
                "--pool=prefork",
                "--concurrency=1",
                "-l",
                "info",
                "-n",
                self.hostname,
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
            env={**env, "TOCSIN_TEST_WORKER": name},
            cwd=directory,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the worker answers a ping (its pool child is up by then)."""

        def pinged() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker {self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            replies = self.app.control.ping(destination=[self.hostname], timeout=0.25)
            return any(self.hostname in reply for reply in replies)

        wait_until(pinged, timeout, f"worker {self.name} to answer a ping", interval=0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 15.0) -> str:
        wait_until(lambda: text in self.log(), timeout, f"{text!r} in worker {self.name}'s log")
        return self.log()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool child) at once."""
        _kill_group(self.process, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            _kill_group(self.process, signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                _kill_group(self.process, signal.SIGKILL)
                self.process.wait(10)
        # Pool children outlive a killed parent for a moment; nothing may be left.
        _kill_group(self.process, signal.SIGKILL)
        self._log.close()


class Events:
    """What the test plugin's receivers recorded (a Redis list of JSON objects)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.client.lrange(EVENTS, 0, -1)]

    def where(self, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.all() if all(e.get(k) == v for k, v in match.items())]

    def wait(self, timeout: float = 15.0, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        return list(
            wait_until(
                lambda: (found := self.where(**match)) and len(found) >= count and found,
                timeout,
                f"{count} event(s) matching {match}; have {self.all()}",
            )
        )


@dataclass
class CeleryEnv:
    """The module's broker, plugin build and the workers started on them."""

    tmp: Path
    redis: RedisServer
    plugin_path: Path
    evil_path: Path
    markers: Path
    sqlite_url: str
    django_db: Path
    workers: list[Worker] = field(default_factory=list)
    apps: dict[tuple[int, int], Any] = field(default_factory=dict)

    def app(self, db: int = 0, visibility_timeout: int = 3600) -> Any:
        """The sending side's Celery app for broker database *db*, made Celery's current."""
        from tocsin_celery_testplugin.apps import make_app

        app = self.apps.get((db, visibility_timeout))
        if app is None:
            app = make_app(self.redis.url(db), visibility_timeout=visibility_timeout)
            self.apps[db, visibility_timeout] = app
        app.set_current()
        return app

    def worker_env(self, db: int = 0, **extra: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TOCSIN_", "CELERY_", "DJANGO_"))
        }
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.plugin_path), str(self.evil_path)]),
            TOCSIN_PLUGINS="celery-test",  # only the test plugin, not the venv's others
            TOCSIN_TEST_BROKER=self.redis.url(db),
            TOCSIN_TEST_REDIS=self.redis.url(0),
            TOCSIN_TEST_MARKERS=str(self.markers),
            TOCSIN_TEST_SQLA_URL=self.sqlite_url,
            TOCSIN_TEST_DJANGO_DB=str(self.django_db),
            PYTHONDONTWRITEBYTECODE="1",
        )
        env.update(extra)
        return env

    def start_worker(self, name: str, app: Any, db: int = 0, **extra: str) -> Worker:
        worker = Worker(name, app, self.worker_env(db, **extra), self.tmp)
        self.workers.append(worker)
        try:
            worker.wait_ready()
        except BaseException:
            worker.stop()
            raise
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        # Results still in reference cycles unsubscribe now, while Redis answers.
        gc.collect()
        for app in self.apps.values():
            app.close()
        self.redis.stop()


def build_plugin(tmp: Path) -> Path:
    """pip-install the test plugin distribution into a fresh target folder."""
    source = tmp / "plugin-src"
    shutil.copytree(PLUGIN_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp / "plugin-target"
    pip_install([source], target)
    return target


@pytest.fixture(scope="module", name="celery_env")
def celery_env_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryEnv]:
    tmp = tmp_path_factory.mktemp("celery")
    plugin_path = build_plugin(tmp)
    evil_path = tmp / "evil"
    evil_path.mkdir()
    (evil_path / "evil_tocsin_payload.py").write_text(EVIL_MODULE)
    markers = tmp / "markers"
    markers.mkdir()
    redis = RedisServer(tmp / "redis")
    env: CeleryEnv | None = None
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.syspath_prepend(str(plugin_path))
            mp.setenv("TOCSIN_TEST_REDIS", redis.url(0))
            from sqlalchemy import create_engine
            from tocsin_celery_testplugin.models import Base

            sqlite_url = f"sqlite:///{tmp / 'orders.db'}"
            engine = create_engine(sqlite_url)
            Base.metadata.create_all(engine)
            engine.dispose()
            env = CeleryEnv(
                tmp, redis, plugin_path, evil_path, markers, sqlite_url, tmp / "django.db"
            )
            yield env
    finally:
        if env is not None:
            env.stop()
        else:
            redis.stop()


@pytest.fixture(scope="module", name="main_worker")
def main_worker_fixture(celery_env: CeleryEnv) -> Worker:
    return celery_env.start_worker("main", celery_env.app(0))


@pytest.fixture(name="events")
def events_fixture(celery_env: CeleryEnv, main_worker: Worker) -> Events:
    """The recorded events, emptied; Celery's current app is the main worker's."""
    celery_env.app(0)
    celery_env.redis.client.delete(EVENTS)
    return Events(celery_env.redis.client)
