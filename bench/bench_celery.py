"""Deferred receivers on Celery: enqueue rate and end-to-end latency, on a real Redis.

What it measures, each against the same work done with a plain Celery task:

* **enqueue rate** -- ``signal.send()`` with one deferred receiver connected (which
  encodes the arguments and publishes one ``tocsin.deliver`` message) against
  ``task.delay(**same arguments)``, in sends per second, no worker consuming.  Rounds
  alternate between the two and the best round of each is kept.  Goal: the deferred
  send within 10% of ``delay()``.
* **latency** -- from just before ``send()`` (or ``delay()``) to the first line of the
  receiver (or task) in a worker, measured on one clock (same machine): one message at
  a time on an idle worker, then a burst of messages, with one and with two workers
  (prefork, one child each), with the drain rate of the burst.

It starts its own ``redis-server`` (free port, no persistence, in a temporary folder)
and its own workers, and stops them all.  No result backend: a deferred receiver is
fire-and-forget, and a backend would add a subscription per send to both sides.

Run by hand::

    python bench/bench_celery.py [--sends 5000] [--rounds 6] [--samples 200] [--burst 600]
    python bench/bench_celery.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import environment, python_description, table, write_results

APP_MODULE = "tocsin_bench_celery_app"

#: The worker's app module (written to a temporary folder on both sides' path).
APP_SOURCE = '''\
"""Celery app for bench/bench_celery.py: one deferred receiver, one plain task."""

import os
import time

import redis
from celery import Celery

from tocsin import Signal, receiver
from tocsin.contrib.celery import deferred, install

app = Celery("tocsin-bench", broker=os.environ["TOCSIN_BENCH_BROKER"], set_as_current=False)
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
)
install(app, plugins=False)

class Shop:
    """The sender: travels by class path, so the worker must know it too."""


order_paid = Signal(providing_args=["order_id", "amount", "note", "sent_at"], name="bench.paid")
_client = None


def _record(kind, sent_at):
    global _client
    now = time.time()
    if _client is None:
        _client = redis.Redis.from_url(os.environ["TOCSIN_BENCH_BROKER"])
    _client.rpush("bench:latency", f"{kind} {now - sent_at!r} {now!r}")


@receiver(order_paid)
@deferred(app=app)
def on_paid(sender, order_id, amount, note, sent_at, **kwargs):
    _record("deferred", sent_at)


@app.task(name="bench.plain", serializer="json", acks_late=True)
def plain(order_id, amount, note, sent_at):
    _record("plain", sent_at)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("bench_celery needs redis-server on PATH (apt-get install redis-server)")
    import redis

    port = free_port()
    process = subprocess.Popen(
        [
            *(server, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(directory)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = redis.Redis(port=port)
    try:
        wait_until(lambda: _ping(client), 10, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        _kill_group(process)


def _ping(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@contextlib.contextmanager
def workers(count: int, app: Any, env: dict[str, str], directory: Path) -> Iterator[None]:
    processes: list[subprocess.Popen[bytes]] = []
    names = [f"bench{i}-{os.getpid()}@{socket.gethostname()}" for i in range(count)]
    try:
        for name in names:
            log = open(directory / f"{name.partition('@')[0]}.log", "wb")  # noqa: SIM115
            processes.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "celery", "-A", APP_MODULE, "worker"),
                        *("--pool=prefork", "--concurrency=1", "-l", "warning", "-n", name),
                        *("--without-mingle", "--without-gossip", "--without-heartbeat"),
                    ],
                    env=env,
                    cwd=directory,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()

        def ready() -> bool:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited; see the logs in {directory}")
            replies = app.control.ping(destination=names, timeout=0.25)
            return len({host for reply in replies for host in reply}) == count

        wait_until(ready, 60, f"{count} worker(s)")
        yield
    finally:
        for process in processes:
            _kill_group(process)


def payload(index: int) -> dict[str, Any]:
    return {"order_id": index, "amount": "19.99", "note": "paid by card", "sent_at": time.time()}


def enqueue_rates(bench: Any, sends: int, rounds: int) -> dict[str, dict[str, float]]:
    """Best sends per second (wall clock) and best CPU time per send of this process,
    for each way, over alternating rounds (no worker running).

    Publishing waits for Redis to answer, so the wall-clock rate mostly measures the
    broker round trip; the CPU time is what the sending process itself spends.
    """
    send = bench.order_paid.send
    delay = bench.plain.delay
    args = [payload(i) for i in range(sends)]

    def deferred_round(batch: list[dict[str, Any]]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for named in batch:
            send(sender=bench.Shop, **named)
        return time.perf_counter() - wall, time.process_time() - cpu

    def plain_round(batch: list[dict[str, Any]]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for named in batch:
            delay(**named)
        return time.perf_counter() - wall, time.process_time() - cpu

    deferred_round(args[: max(1, sends // 10)])  # connections, caches, first imports
    plain_round(args[: max(1, sends // 10)])
    best = {name: [float("inf"), float("inf")] for name in ("deferred send()", "plain delay()")}
    gc.collect()
    gc.disable()
    try:
        for index in range(rounds):
            order = [("deferred send()", deferred_round), ("plain delay()", plain_round)]
            for name, run in order if index % 2 == 0 else order[::-1]:
                wall, cpu = run(args)
                best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    finally:
        gc.enable()
    return {
        name: {"per_second": sends / wall, "cpu_us_per_send": cpu / sends * 1e6}
        for name, (wall, cpu) in best.items()
    }


def read_latencies(client: Any, count: int, timeout: float = 120.0) -> list[tuple[str, float]]:
    """Pop *count* recorded latencies (waiting for them); (kind, seconds) each."""
    found: list[tuple[str, float]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        item = client.blpop("bench:latency", timeout=max(0.1, deadline - time.monotonic()))
        if item is None:
            raise RuntimeError(f"only {len(found)} of {count} deliveries arrived")
        kind, latency, _ = item[1].decode().split()
        found.append((kind, float(latency)))
    return found


def latency_figures(
    bench: Any, client: Any, samples: int, burst: int
) -> dict[str, dict[str, float]]:
    """Idle latency (one message at a time) and burst latency and drain rate, for the
    deferred receiver and the plain task, interleaved so drift affects both alike."""
    fire: dict[str, Callable[[dict[str, Any]], object]] = {
        "deferred": lambda named: bench.order_paid.send(sender=bench.Shop, **named),
        "plain": lambda named: bench.plain.delay(**named),
    }
    for kind in fire:  # warm the worker's connections and imports
        for i in range(10):
            fire[kind](payload(i))
    read_latencies(client, 20)
    idle: dict[str, list[float]] = {kind: [] for kind in fire}
    for i in range(samples):
        for kind in fire if i % 2 == 0 else reversed(fire):
            fire[kind](payload(i))
            idle[kind].append(read_latencies(client, 1)[0][1])
    in_burst: dict[str, list[float]] = {kind: [] for kind in fire}
    drain: dict[str, float] = dict.fromkeys(fire, 0.0)
    half = max(1, burst // 2)
    for round_ in range(2):  # two half bursts each, in alternating order
        for kind in fire if round_ % 2 == 0 else reversed(fire):
            started = time.perf_counter()
            for i in range(half):
                fire[kind](payload(i))
            in_burst[kind] += [latency for _, latency in read_latencies(client, half)]
            drain[kind] += time.perf_counter() - started
    figures: dict[str, dict[str, float]] = {}
    for kind in fire:
        figures[f"{kind} idle"] = summary(idle[kind])
    for kind in fire:
        per_second = len(in_burst[kind]) / drain[kind]
        figures[f"{kind} burst"] = {**summary(in_burst[kind]), "per_second": per_second}
    return figures


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] * 1000

    return {
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=5000, help="sends per enqueue round")
    parser.add_argument("--rounds", type=int, default=6, help="enqueue rounds per way")
    parser.add_argument("--samples", type=int, default=200, help="one-at-a-time latencies")
    parser.add_argument("--burst", type=int, default=600, help="messages per burst")
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    args, _ = parser.parse_known_args(argv)
    if args.quick:
        args.sends, args.rounds, args.samples, args.burst = 1000, 2, 30, 200

    import redis

    with tempfile.TemporaryDirectory(prefix="tocsin-bench-celery-") as tmp:
        directory = Path(tmp)
        (directory / f"{APP_MODULE}.py").write_text(APP_SOURCE, encoding="utf-8")
        with redis_server(directory) as url:
            os.environ["TOCSIN_BENCH_BROKER"] = url
            sys.path.insert(0, str(directory))
            import importlib

            bench = importlib.import_module(APP_MODULE)
            client = redis.Redis.from_url(url)
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")]),
            }
            try:
                print(f"Deferred receivers on Celery + Redis, {python_description()}", flush=True)
                rates = enqueue_rates(bench, args.sends, args.rounds)
                client.flushdb()
                latency: dict[str, dict[str, dict[str, float]]] = {}
                for count in (1, 2):
                    with workers(count, bench.app, env, directory):
                        latency[f"{count} worker(s)"] = latency_figures(
                            bench, client, args.samples, args.burst
                        )
            finally:
                client.close()
                bench.app.close()
                sys.path.remove(str(directory))

    plain = rates["plain delay()"]
    ratio = rates["deferred send()"]["per_second"] / plain["per_second"]
    print()
    print(
        table(
            ["enqueue (no worker)", "sends/s", "vs delay()", "CPU us/send", "vs delay()"],
            [
                [
                    name,
                    f"{rate['per_second']:,.0f}",
                    f"{rate['per_second'] / plain['per_second']:.1%}",
                    f"{rate['cpu_us_per_send']:.0f}",
                    f"{rate['cpu_us_per_send'] / plain['cpu_us_per_send']:.1%}",
                ]
                for name, rate in rates.items()
            ],
            title=f"Enqueue rate: best of {args.rounds} rounds of {args.sends} sends "
            f"(goal: deferred >= 90% of delay(); {'met' if ratio >= 0.9 else 'NOT met'})",
        )
    )
    for workers_label, figures in latency.items():
        print()
        rows = [
            [
                name,
                f"{f['p50_ms']:.2f}",
                f"{f['p90_ms']:.2f}",
                f"{f['p99_ms']:.2f}",
                f"{f['mean_ms']:.2f}",
                f"{f['per_second']:,.0f}" if "per_second" in f else "",
            ]
            for name, f in figures.items()
        ]
        print(
            table(
                ["send -> receiver", "p50 ms", "p90 ms", "p99 ms", "mean ms", "drained/s"],
                rows,
                title=f"Latency, {workers_label} (idle: {args.samples} one at a time; "
                f"burst: {args.burst // 2} at once, twice)",
            )
        )
    path = write_results(
        "celery",
        {
            "environment": environment("celery", "kombu", "redis"),
            "options": vars(args),
            "enqueue_per_second": rates,
            "deferred_vs_delay": ratio,
            "deferred_cpu_vs_delay": rates["deferred send()"]["cpu_us_per_send"]
            / plain["cpu_us_per_send"],
            "latency": latency,
        },
    )
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
