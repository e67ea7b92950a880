"""The shared plugin state (tocsin.state): what it costs a send, and how fast a toggle
reaches every process.

* **send overhead** -- ``signal.send()`` to one receiver, in one process, with no
  shared state against a manager following one (its background thread running: a
  SQLite poll, or a Redis subscription), rounds alternating, best round of each kept.
  The send path does not know the state exists, so the goal is no difference beyond
  noise.  Also the cost of :func:`tocsin.state.check` (what the WSGI middleware, Flask
  and Django call at each request start) when nothing is due, and of one version check
  per backend (what a process pays once per interval).
* **toggle-to-last-process latency** -- N worker processes (default 4) follow the state
  with their background thread; each applies a switch with ``disable()``/``enable()``
  and a hook writes the time.  From the write's ``changed_at`` to the last process's
  hook, for each of K toggles; median and worst.  Goals: Redis <= 1 s, SQL <= 2 s
  (default interval 1 s).

Backends: a SQLite file (always), ``redis-server`` (when on PATH), PostgreSQL through
SQLAlchemy (when its server binaries and psycopg are installed: the cluster helper of
``tests/contrib/pg_cluster.py`` is used).  Everything started is stopped.

Run by hand::

    python bench/bench_state.py [--workers 4] [--toggles 10] [--sends 200000] [--rounds 7]
    python bench/bench_state.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tocsin
import tocsin.state
from _common import environment, python_description, table, write_results
from tocsin import Signal

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

WORKER = textwrap.dedent(
    """
    import os, sys, time, types
    import tocsin, tocsin.state

    out = open(sys.argv[2], "a", buffering=1)


    class Reporter:
        @tocsin.hookimpl
        def tocsin_plugin_enabled(self, manager, name):
            out.write(f"{os.getpid()} {time.time()} enabled {name}\\n")

        @tocsin.hookimpl
        def tocsin_plugin_disabled(self, manager, name):
            out.write(f"{os.getpid()} {time.time()} disabled {name}\\n")


    pm = tocsin.PluginManager("tocsin-bench-state.none", use_cache=False)
    pm.register(Reporter(), name="reporter")
    pm.register(types.ModuleType("bench_noisy"), name="noisy")
    tocsin.state.configure(sys.argv[1], pm)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


# -- servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def postgresql() -> Iterator[str | None]:
    sys.path.insert(0, str(ROOT / "tests" / "contrib"))
    try:
        import pg_cluster
        import psycopg  # noqa: F401
    except ImportError:
        yield None
        return
    bindir = pg_cluster.find_bindir()
    if bindir is None:
        yield None
        return
    cluster = pg_cluster.PostgresCluster(bindir)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


# -- send overhead ----------------------------------------------------------------------


def receiver(sender: Any, **kwargs: Any) -> None:
    return None


def send_rounds(urls: dict[str, str], sends: int, rounds: int) -> dict[str, float]:
    """Best ns per send, for "none" and each backend's state followed in the background."""
    signal = Signal(name="bench.state")
    signal.connect(receiver, weak=False)
    send = signal.send
    configs = ["none", *urls]
    best = dict.fromkeys(configs, float("inf"))
    for _ in range(rounds):
        for config in configs:
            manager = tocsin.PluginManager("tocsin-bench-state.none", use_cache=False)
            state = None
            if config != "none":
                state = tocsin.state.configure(urls[config], manager)
                time.sleep(0.05)  # its thread running
            elapsed = timeit.timeit(lambda: send("s", n=1), number=sends)
            best[config] = min(best[config], elapsed / sends * 1e9)
            if state is not None:
                state.close()
    return best


def check_costs(urls: dict[str, str]) -> dict[str, float]:
    """ns per tocsin.state.check() when nothing is due, and µs per version read."""
    costs: dict[str, float] = {}
    number = 200_000
    costs["check(), no shared state (ns)"] = (
        timeit.timeit(tocsin.state.check, number=number) / number * 1e9
    )
    for kind, url in urls.items():
        manager = tocsin.PluginManager("tocsin-bench-state.none", use_cache=False)
        state = tocsin.state.configure(url, manager, background=False, interval=3600)
        assert state is not None
        state.check()
        costs[f"check(), {kind} state, not due (ns)"] = (
            timeit.timeit(tocsin.state.check, number=number) / number * 1e9
        )
        reads = 2000
        costs[f"one version read, {kind} (us)"] = (
            timeit.timeit(state.backend.version, number=reads) / reads * 1e6
        )
        state.close()
    return costs


# -- toggle latency ---------------------------------------------------------------------


def toggle_latency(url: str, workers: int, toggles: int, folder: Path) -> list[float]:
    out = folder / f"switches-{time.monotonic_ns()}.log"
    script = folder / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), url, str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        for _ in range(workers)
    ]
    writer = tocsin.state.SharedState(url, background=False)
    latencies = []
    try:
        pids = set()
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"ready":
                raise RuntimeError("a worker did not start")
            pids.add(str(process.pid))
        time.sleep(0.3)
        for number in range(toggles):
            enabled = number % 2 == 1
            action = "enabled" if enabled else "disabled"
            change = writer.set("noisy", enabled, "bench", "bench_state")
            deadline = time.monotonic() + 10
            while True:
                seen: dict[str, float] = {}
                for line in out.read_text().splitlines() if out.exists() else []:
                    pid, when, what, name = line.split()
                    if what == action and name == "noisy" and float(when) >= change.changed_at:
                        seen.setdefault(pid, float(when))
                if seen.keys() >= pids:
                    latencies.append(max(seen.values()) - change.changed_at)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"toggle {number} did not reach every worker in 10 s")
                time.sleep(0.005)
            time.sleep(0.2 + random.random())  # no phase-locking with the 1 s polls
    finally:
        writer.close()
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()
    return latencies


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_state.py", description=__doc__)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--toggles", type=int, default=10)
    parser.add_argument("--sends", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    if options.quick:
        options.toggles, options.sends, options.rounds = 4, 50_000, 3
    for variable in [v for v in os.environ if v.startswith("TOCSIN_STATE")]:
        del os.environ[variable]
    print(f"{python_description()}; {options.workers} workers, {options.toggles} toggles")
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-state-")))
        urls = {"sqlite": str(folder / "state.db")}
        redis_url = stack.enter_context(redis_server(folder))
        if redis_url:
            urls["redis"] = redis_url
        pg_url = stack.enter_context(postgresql())
        if pg_url:
            urls["postgresql"] = pg_url
        skipped = [k for k in ("redis", "postgresql") if k not in urls]
        if skipped:
            print(f"not measured (not installed): {', '.join(skipped)}")

        sends = send_rounds(urls, options.sends, options.rounds)
        base = sends["none"]
        print(
            table(
                ["shared state", "ns per send (best round)", "vs none"],
                [[k, f"{v:.1f}", f"{v / base:.3f}"] for k, v in sends.items()],
                title="\nsend() to one receiver, with and without a shared state followed",
            )
        )
        costs = check_costs(urls)
        print(
            table(
                ["what", "cost"],
                [[k, f"{v:.2f}"] for k, v in costs.items()],
                title="\nthe request-start check and the per-interval version read",
            )
        )
        latency: dict[str, dict[str, float]] = {}
        for kind, url in urls.items():
            found = toggle_latency(url, options.workers, options.toggles, folder)
            latency[kind] = {
                "median_ms": statistics.median(found) * 1000,
                "max_ms": max(found) * 1000,
                "min_ms": min(found) * 1000,
            }
        print(
            table(
                ["backend", "median ms", "worst ms", "best ms"],
                [
                    [k, f"{v['median_ms']:.0f}", f"{v['max_ms']:.0f}", f"{v['min_ms']:.0f}"]
                    for k, v in latency.items()
                ],
                title=f"\ntoggle to the last of {options.workers} processes "
                f"({options.toggles} toggles, default interval 1 s)",
            )
        )
    path = write_results(
        "state",
        {
            "environment": environment("redis", "sqlalchemy", "psycopg"),
            "options": vars(options),
            "send_ns": sends,
            "check_costs": costs,
            "toggle_latency": latency,
        },
    )
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
