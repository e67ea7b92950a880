"""Fixtures shared by the integration tests: a recorder of the request signals."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tocsin.signals import got_request_exception, request_finished, request_started


class Recorder:
    """Records every request signal (from any thread), in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, dict[str, Any]]] = []
        self.finished = threading.Event()
        self.errors: list[BaseException | None] = []
        self._lock = threading.Lock()

    def _add(self, name: str, sender: Any, named: dict[str, Any]) -> None:
        named.pop("signal", None)
        with self._lock:
            self.events.append((name, sender, named))

    def on_started(self, sender: Any, **named: Any) -> None:
        self._add("started", sender, named)

    def on_exception(self, sender: Any, **named: Any) -> None:
        self.errors.append(sys.exc_info()[1])
        self._add("exception", sender, named)

    def on_finished(self, sender: Any, **named: Any) -> None:
        self._add("finished", sender, named)
        self.finished.set()

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _, _ in self.events]

    def count(self, name: str) -> int:
        return self.names().count(name)

    def wait_finished(self, timeout: float = 5.0) -> None:
        assert self.finished.wait(timeout), f"request_finished not sent; saw {self.names()}"

    def reset(self) -> None:
        with self._lock:
            self.events.clear()
            self.errors.clear()
            self.finished.clear()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    with (
        request_started.connected_to(rec.on_started),
        got_request_exception.connected_to(rec.on_exception),
        request_finished.connected_to(rec.on_finished),
    ):
        yield rec


# --- a throwaway PostgreSQL server (tests of tocsin.contrib.sqlalchemy) ---------------


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """The URL of a PostgreSQL cluster started for this test session, then removed.

    Skips, saying why, only when no PostgreSQL server binaries are installed.
    """
    import pg_cluster

    bindir = pg_cluster.find_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install the "
            f"'postgresql' package, or set {pg_cluster.BINDIR_ENV} to their directory"
        )
    cluster = pg_cluster.PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()
