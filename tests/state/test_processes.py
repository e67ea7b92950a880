"""A shared plugin state across real processes: gunicorn with 4 workers, on a real
redis-server, on a SQLite file and on a throwaway PostgreSQL cluster through
SQLAlchemy (issue 17).

Each worker loads the test plugins and follows ``TOCSIN_STATE``; the ``reporter``
plugin's hooks write every switch each process applies to ``switches.log``, and the
``noisy`` plugin's receiver writes every request it sees to ``noisy.log`` (see
``state_harness``).  The Redis run uses ``--preload``: the master loads the plugins and
reads the state, the workers are forked from it, and each restarts its own listener.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import state_harness
from state_harness import Gunicorn, RedisServer, lines, needs_redis, wait_until

from tocsin.state import SharedState

pytest.importorskip(
    "gunicorn", reason="the multi-process tests run gunicorn (pip install gunicorn)"
)

#: The issue's goals: toggle-to-last-process latency, per backend.
GOALS = {"redis": 1.0, "sqlite": 2.0, "postgresql": 2.0}

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "contrib"))
import pg_cluster  # noqa: E402  (tests/contrib's throwaway PostgreSQL cluster)


@contextlib.contextmanager
def postgresql() -> Iterator[pg_cluster.PostgresCluster]:
    bindir = pg_cluster.find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    cluster = pg_cluster.PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return state_harness.build_site(tmp_path_factory.mktemp("state-plugins"))


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=needs_redis), "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Any]]:
    kind: str = request.param
    if kind == "sqlite":
        yield kind, str(tmp_path / "state.db"), None
        return
    if kind == "postgresql":
        with postgresql() as cluster:
            yield kind, cluster.url, cluster
        return
    server = RedisServer(tmp_path / "redis")
    try:
        yield kind, server.url, server
    finally:
        server.stop()


def worker_pids(server: Gunicorn) -> set[str]:
    """The workers that have loaded the application (and follow the shared state)."""
    booted = set()
    for line in server.log().splitlines():
        if "Booting worker with pid:" in line:
            booted.add(line.rsplit(":", 1)[1].strip())
    return booted & {pid for (pid,) in lines(server.out / "ready.log")}


def start(site: Path, out: Path, url: str, preload: bool) -> tuple[Gunicorn, set[str]]:
    server = Gunicorn(site, out, {"TOCSIN_STATE": url}, workers=4, preload=preload)
    try:
        pids = wait_until(
            lambda: (found := worker_pids(server)) and len(found) == 4 and found,
            30,
            "4 gunicorn workers",
        )
    except BaseException:
        server.stop()
        raise
    return server, pids


def applied(out: Path, action: str, name: str, since: float, pids: set[str]) -> dict[str, float]:
    """pid -> when each of *pids* applied *action* to *name* after *since*."""
    found: dict[str, float] = {}
    for pid, when, what, plugin in lines(out / "switches.log"):
        if pid in pids and what == action and plugin == name and float(when) >= since:
            found.setdefault(pid, float(when))
    return found


def toggle(url: str, out: Path, pids: set[str], enabled: bool) -> float:
    """Switch ``noisy`` in the shared state; return the time until the last of *pids*
    applied it."""
    writer = SharedState(url, None, background=False)
    action = "enabled" if enabled else "disabled"
    try:
        before = time.time()
        change = writer.set("noisy", enabled, reason="pytest toggle", who="pytest")
        reached = wait_until(
            lambda: (found := applied(out, action, "noisy", before, pids)).keys() == pids and found,
            10,
            f"every worker to apply {action} noisy",
        )
    finally:
        writer.close()
    assert change.changed_by == "pytest"
    return max(reached.values()) - change.changed_at


def hammer(server: Gunicorn, count: int = 24) -> None:
    for _ in range(count):
        server.get()


def test_a_toggle_reaches_every_worker_and_survives_restarting_them_all(
    site: Path, tmp_path: Path, backend: tuple[str, str, Any]
) -> None:
    kind, url, _ = backend
    out = tmp_path / "out"
    out.mkdir()
    server, pids = start(site, out, url, preload=kind == "redis")
    try:
        hammer(server, 8)
        assert lines(out / "noisy.log"), "noisy is enabled at first"

        latency = toggle(url, out, pids, enabled=False)
        print(f"{kind}: disable reached the last of 4 workers in {latency * 1000:.0f} ms")
        assert latency <= GOALS[kind]
        seen = len(lines(out / "noisy.log"))
        hammer(server)
        assert len(lines(out / "noisy.log")) == seen, "a disabled plugin's receiver ran"
        assert len(lines(out / "reporter.log")) >= 24 + 8
    finally:
        server.stop()

    # Restarted, every worker reads the state at start-up: noisy is never imported.
    for name in ("noisy-imports.log", "noisy.log", "ready.log"):
        (out / name).unlink(missing_ok=True)
    server, pids = start(site, out, url, preload=kind == "redis")
    try:
        hammer(server)
        assert not lines(out / "noisy.log")
        assert not lines(out / "noisy-imports.log"), "a switched-off plugin was imported"

        latency = toggle(url, out, pids, enabled=True)
        print(f"{kind}: enable reached the last of 4 workers in {latency * 1000:.0f} ms")
        assert latency <= GOALS[kind]
        hammer(server, 8)
        assert lines(out / "noisy.log")
    finally:
        server.stop()


@pytest.mark.parametrize("kind", [pytest.param("redis", marks=needs_redis), "postgresql"])
def test_a_backend_killed_mid_run_changes_nothing_that_was_running(
    site: Path, tmp_path: Path, kind: str
) -> None:
    with contextlib.ExitStack() as stack:
        if kind == "redis":
            redis = RedisServer(tmp_path / "redis")
            stack.callback(redis.stop)
            url, kill = redis.url, redis.stop
        else:
            cluster = stack.enter_context(postgresql())
            url, kill = cluster.url, cluster.stop
        out = tmp_path / "out"
        out.mkdir()
        server, pids = start(site, out, url, preload=False)
        stack.callback(server.stop)
        toggle(url, out, pids, enabled=False)
        kill()
        check_nothing_changes(server, out, pids)


def check_nothing_changes(server: Gunicorn, out: Path, pids: set[str]) -> None:
    """Every worker notices the backend is gone, says so once, and goes on serving
    requests with the state it had."""
    # Every worker notices (its listener's connection drops) and says so once.
    wait_until(
        lambda: (
            {line.split()[0] for line in server.log().splitlines() if "cannot be reached" in line}
            >= pids
        ),
        10,
        "every worker to log the unreachable backend",
    )
    before = len(lines(out / "reporter.log"))
    noisy_before = len(lines(out / "noisy.log"))
    hammer(server)
    time.sleep(2)  # listeners retrying, checks at request start failing
    hammer(server)
    assert len(lines(out / "reporter.log")) == before + 48, "the requests were served"
    assert len(lines(out / "noisy.log")) == noisy_before, "noisy came back on"
    complaints = [line for line in server.log().splitlines() if "cannot be reached" in line]
    assert sorted(c.split()[0] for c in complaints) == sorted(pids), complaints
    assert "Traceback" not in server.log()
