"""Real processes for the shared-state tests: plugin distributions, redis-server, gunicorn.

Nothing is mocked.  ``build_site`` has pip build and install three plugin distributions
of the group :data:`GROUP` into a folder; the WSGI application ``stateapp`` (in this
folder) loads them in every gunicorn worker.  Each plugin reports what it does in its
process through files in ``$STATE_TEST_OUT``:

``noisy``
    a ``request_started`` receiver: appends ``<pid> <time>`` to ``noisy.log`` for every
    request it sees; its import appends ``<pid>`` to ``noisy-imports.log``.
``reporter``
    a ``request_started`` receiver (``reporter.log``), and the manager's hooks: each
    plugin enabled or disabled in its process appends ``<pid> <time> enabled|disabled
    <name>`` to ``switches.log``, which is how a test sees every process apply a change.
``quiet``
    nothing but a receiver, to be switched by the in-process tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tocsin.testing import install_plugin_distribution

GROUP = "tocsinstate.plugins"
HERE = Path(__file__).resolve().parent
REDIS_SERVER = shutil.which("redis-server")

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not on PATH (apt-get install redis-server)"
)

NOISY = """
import os, time
import tocsin
from tocsin.signals import request_started

OUT = os.environ.get("STATE_TEST_OUT")
if OUT:
    with open(os.path.join(OUT, "noisy-imports.log"), "a") as out:
        out.write(f"{os.getpid()}\\n")


@tocsin.receiver(request_started, dispatch_uid="state-test:noisy")
def on_request(sender, **kwargs):
    if OUT:
        with open(os.path.join(OUT, "noisy.log"), "a") as out:
            out.write(f"{os.getpid()} {time.time()}\\n")
"""

REPORTER = """
import os, time
import tocsin
from tocsin.signals import request_started

OUT = os.environ.get("STATE_TEST_OUT")


def _write(name, line):
    if OUT:
        with open(os.path.join(OUT, name), "a") as out:
            out.write(line + "\\n")


@tocsin.receiver(request_started, dispatch_uid="state-test:reporter")
def on_request(sender, **kwargs):
    _write("reporter.log", f"{os.getpid()} {time.time()}")


@tocsin.hookimpl
def tocsin_plugin_enabled(manager, name):
    _write("switches.log", f"{os.getpid()} {time.time()} enabled {name}")


@tocsin.hookimpl
def tocsin_plugin_disabled(manager, name):
    _write("switches.log", f"{os.getpid()} {time.time()} disabled {name}")
"""

QUIET = """
import tocsin
from tocsin.signals import request_finished


@tocsin.receiver(request_finished, dispatch_uid="state-test:quiet")
def on_finished(sender, **kwargs):
    return "quiet"
"""


def build_site(directory: Path, group: str = GROUP) -> Path:
    for name, source in (("noisy", NOISY), ("reporter", REPORTER), ("quiet", QUIET)):
        install_plugin_distribution(
            directory, source, name=name, group=group, module=f"tocsin_state_test_{name}"
        )
    return directory / "site"


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
    """``redis-server`` on a free port of 127.0.0.1, without persistence."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        assert REDIS_SERVER is not None
        self.port = port or free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self._log = open(directory / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._answers, 10, "redis-server to accept connections")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        _kill_group(self.process, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()


class Gunicorn:
    """``gunicorn`` serving ``stateapp:application`` with *workers* sync workers."""

    def __init__(
        self,
        site: Path,
        out: Path,
        env: dict[str, str],
        workers: int = 4,
        preload: bool = False,
    ) -> None:
        self.port = free_port()
        self.out = out
        self.log_path = out / f"gunicorn-{self.port}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        command = [sys.executable, "-m", "gunicorn", "-w", str(workers)]
        command += ["-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "2"]
        if preload:
            command.append("--preload")
        command.append("stateapp:application")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        environment.update(
            PYTHONPATH=os.pathsep.join([str(site), str(HERE)]),
            STATE_TEST_OUT=str(out),
            TOCSIN_NO_CACHE="1",
            **env,
        )
        self.process = subprocess.Popen(
            command,
            cwd=out,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers = workers
        wait_until(self._ready, 30, "gunicorn to answer")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"gunicorn exited with {self.process.returncode}:\n{self.log_path.read_text()}"
            )
        try:
            self.get()
        except OSError:
            return False
        return True

    def get(self, path: str = "/") -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
            body: bytes = answer.read()
            return body

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            _kill_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                _kill_group(self.process, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()


def lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]
