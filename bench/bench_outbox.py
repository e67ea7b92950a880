"""The transactional outbox of deferred receivers: commit cost and relay drain rate.

Measured on SQLite (a file database) and on PostgreSQL, side by side in one run, with
a real ``redis-server`` as the broker and no worker consuming:

* **commit + enqueue** -- one unit of work as a web request does it: a new session
  INSERTs a business row (``bench_orders``), then either

  - ``signal.send()`` with one ``@deferred(on_commit=True, outbox=True)`` receiver
    connected, then ``session.commit()`` (the message is INSERTed in the same
    transaction, published after the commit, and its row deleted), or
  - ``signal.send()`` with one ``@deferred(on_commit=True)`` receiver (published after
    the commit, no outbox row), or
  - ``session.commit()`` then ``task.delay()`` of an equivalent plain Celery task.

  Goal: the outbox within 1.2x the time of commit + ``delay()``.
* **relay drain rate** -- the outbox holds N pending rows, those N sends made while
  the broker was down left there (one real fill per database: the sends publish to a
  port nobody listens on, fail, and release their rows; each round restores that
  snapshot), and ``relay_once()`` is called until it finds nothing; against N
  ``delay()`` calls, in messages per second.  Goal: the relay at least 0.5x ``delay()``.

Rounds alternate between the variants (their order rotates each round); the best and
the median round of each are kept, and the ratios use the best.  Every round checks
that the broker's queue holds exactly the messages it should.

The SQLite file lives in ``bench/.work/outbox`` (ignored by git; not ``/tmp``, which
may be a RAM disk and would flatter the commits), with SQLite's default journal and
``synchronous`` settings.  The PostgreSQL server is started here from the installed
binaries (``/usr/lib/postgresql/*/bin``, or ``TOCSIN_PG_BINDIR``), with its default
durability settings (``fsync``, ``synchronous_commit``); without binaries its column
is skipped, saying why.  Every server started is stopped on exit, Ctrl-C included.

Run by hand::

    python bench/bench_outbox.py [--sends 1000] [--rows 3000] [--rounds 5] [--batch 100]
    python bench/bench_outbox.py --quick
    python bench/bench_outbox.py --databases sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import glob
import logging
import os
import pwd
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from _common import BENCH_DIR, environment, python_description, table, write_results
from bench_celery import free_port, redis_server, wait_until

WORK_DIR = BENCH_DIR / ".work" / "outbox"
#: The queue every message of this bench goes to (Celery's default).
QUEUE = "celery"
#: PostgreSQL refuses to run as root; as root the cluster runs as this user.
PG_RUN_AS = "nobody"
PG_BINDIR_ENV = "TOCSIN_PG_BINDIR"

COMMIT_GOAL = 1.2
DRAIN_GOAL = 0.5


# -- what is sent ------------------------------------------------------------------


def on_paid_outbox(sender: Any, instance: Any, amount: str, note: str, **kwargs: Any) -> None:
    """The outbox receiver (never runs here: no worker consumes)."""


def on_paid_after_commit(sender: Any, instance: Any, amount: str, note: str, **kwargs: Any) -> None:
    """The on_commit receiver without outbox (never runs here)."""


def on_paid_broker_down(sender: Any, instance: Any, amount: str, note: str, **kwargs: Any) -> None:
    """The outbox receiver whose broker is down: it fills the outbox."""


def plain_paid(order_id: int, amount: str, note: str) -> None:
    """The plain Celery task (never runs here)."""


class Base(DeclarativeBase):
    pass


class Order(Base):
    """The business row each unit of work INSERTs (and the signal's sender)."""

    __tablename__ = "bench_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(50))
    amount: Mapped[str] = mapped_column(String(20))


class Parts:
    """The Celery apps and signals of one run."""

    def __init__(self, broker: str) -> None:
        from celery import Celery

        from tocsin import Signal
        from tocsin.contrib.celery import connect_deferred, deferred, install

        conf = {
            "accept_content": ["json"],
            "task_serializer": "json",
            "task_ignore_result": True,
            "broker_connection_retry_on_startup": True,
        }
        self.app = Celery("tocsin-bench-outbox", broker=broker, set_as_current=False)
        self.app.conf.update(conf)
        install(self.app, plugins=False)
        self.plain = self.app.task(name="bench.plain_paid", serializer="json")(plain_paid)
        # A broker nobody listens on, failing at once (no retries), for the fill.
        self.down_app = Celery(
            "tocsin-bench-outbox-down",
            broker=f"redis://127.0.0.1:{free_port()}/0",
            set_as_current=False,
        )
        self.down_app.conf.update(
            conf,
            broker_connection_retry=False,
            broker_connection_max_retries=0,
            task_publish_retry=False,
            # No reconnection attempts in kombu either (else ~6 s per failed publish).
            broker_transport_options={"max_retries": 0, "interval_start": 0},
            tocsin_publish_timeout=5.0,
        )
        install(self.down_app, plugins=False)
        self.outbox_signal = Signal(name="bench.paid.outbox")
        self.commit_signal = Signal(name="bench.paid.commit")
        self.down_signal = Signal(name="bench.paid.down")
        connect_deferred(
            self.outbox_signal,
            deferred(on_paid_outbox, app=self.app, on_commit=True, outbox=True),
        )
        connect_deferred(
            self.commit_signal, deferred(on_paid_after_commit, app=self.app, on_commit=True)
        )
        connect_deferred(
            self.down_signal,
            deferred(on_paid_broker_down, app=self.down_app, on_commit=True, outbox=True),
        )

    def close(self) -> None:
        self.app.close()
        self.down_app.close()


# -- servers -------------------------------------------------------------------------


def find_pg_bindir() -> Path | None:
    """The newest installed PostgreSQL server binaries (initdb + postgres), or None."""
    candidates = [Path(p) for p in filter(None, [os.environ.get(PG_BINDIR_ENV)])]
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in Path(path).parent.name.split(".") if part.isdigit())

    found = glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin")
    candidates += [Path(p) for p in sorted(found, key=version, reverse=True)]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    return None


@contextlib.contextmanager
def postgresql_server(bindir: Path, directory: Path) -> Iterator[str]:
    """A fresh cluster in *directory*, its ``postgres`` run here (own process group,
    so a Ctrl-C reaches only this script), stopped and removed afterwards."""
    directory.mkdir()
    data = directory / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam(PG_RUN_AS)
        os.chown(directory, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", PG_RUN_AS, "--"]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    initdb = subprocess.run(
        [
            *prefix,
            *(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"),
            *("--encoding=UTF8", "--no-locale", "--no-sync"),
        ],
        env=env,
        cwd=directory,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}{initdb.stderr}")
    port = free_port()
    log = open(directory / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            *prefix,
            *(str(bindir / "postgres"), "-D", str(data), "-p", str(port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="),
        ],
        env=env,
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"postgres exited; see {directory / 'server.log'}")
            try:
                with engine.connect() as connection:
                    connection.execute(sa.text("SELECT 1"))
                return True
            except sa.exc.OperationalError:
                return False

        wait_until(ready, 60, "postgres")
        yield url
    finally:
        # SIGINT: PostgreSQL's fast shutdown; then make sure of it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as Ctrl-C does: through every ``finally``."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def work_folder() -> Path:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    ignore = WORK_DIR.parent / ".gitignore"
    if not ignore.exists():  # keep bench/.work out of git
        ignore.write_text("*\n", encoding="utf-8")
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=WORK_DIR))
    folder.chmod(0o755)  # PostgreSQL's user (when run as root) must get to its own folder
    return folder


# -- timing -------------------------------------------------------------------------


def alternate(
    variants: dict[str, Callable[[], tuple[float, float]]], rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Run each variant once per round (their order rotating), gc off; the wall and
    CPU seconds of every round, per variant."""
    names = list(variants)
    times: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    gc.collect()
    gc.disable()
    try:
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                wall, cpu = variants[name]()
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)
                gc.collect()
    finally:
        gc.enable()
    return times


def figures(times: dict[str, list[float]], count: int) -> dict[str, float]:
    best, median = min(times["wall"]), statistics.median(times["wall"])
    return {
        "best_us": best / count * 1e6,
        "median_us": median / count * 1e6,
        "best_per_second": count / best,
        "median_per_second": count / median,
        "cpu_us": min(times["cpu"]) / count * 1e6,
    }


def timed(run: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


class Database:
    """One database of the run: its engine, tables, and the measurements on it."""

    def __init__(self, kind: str, url: str, parts: Parts, client: Any) -> None:
        import sqlalchemy as sa

        from tocsin.contrib.celery.outbox import create_outbox_table, outbox_table

        self.kind, self.parts, self.client = kind, parts, client
        self.engine = sa.create_engine(url)
        self.outbox = outbox_table
        with self.engine.begin() as connection:
            Base.metadata.drop_all(connection)
            outbox_table.drop(connection, checkfirst=True)
        Base.metadata.create_all(self.engine)
        create_outbox_table(self.engine)
        self.counter = 0

    def describe(self) -> str:
        import sqlalchemy as sa

        with self.engine.connect() as connection:
            if self.kind == "sqlite":
                mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
                sync = connection.exec_driver_sql("PRAGMA synchronous").scalar()
                names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
                return (
                    f"SQLite {sqlite3.sqlite_version} (file in {WORK_DIR}; "
                    f"journal_mode={mode}, synchronous={names.get(sync, sync)})"
                )
            version = connection.execute(sa.text("SHOW server_version")).scalar()
            fsync = connection.execute(sa.text("SHOW fsync")).scalar()
            sync = connection.execute(sa.text("SHOW synchronous_commit")).scalar()
            return f"PostgreSQL {version} (fsync={fsync}, synchronous_commit={sync})"

    def close(self) -> None:
        self.engine.dispose()

    # -- commit + enqueue

    def _orders(self, count: int) -> Iterator[Any]:
        for _ in range(count):
            self.counter += 1
            yield Order(label=f"order {self.counter}", amount="19.99")

    def _expect_queued(self, count: int) -> None:
        queued = self.client.llen(QUEUE)
        if queued != count:
            raise RuntimeError(f"{self.kind}: {queued} messages queued, expected {count}")
        self.client.delete(QUEUE)

    def commit_variants(self, sends: int) -> dict[str, Callable[[], tuple[float, float]]]:
        from sqlalchemy.orm import Session

        parts = self.parts

        def via_signal(sig: Any) -> Callable[[], tuple[float, float]]:
            def run() -> None:
                for order in self._orders(sends):
                    with Session(self.engine, expire_on_commit=False) as session:
                        session.add(order)
                        session.flush()
                        sig.send(sender=Order, instance=order, amount="19.99", note="card")
                        session.commit()

            def measured() -> tuple[float, float]:
                result = timed(run)
                self._expect_queued(sends)
                return result

            return measured

        def direct() -> None:
            delay = parts.plain.delay
            for order in self._orders(sends):
                with Session(self.engine, expire_on_commit=False) as session:
                    session.add(order)
                    session.flush()
                    session.commit()
                delay(order_id=order.id, amount="19.99", note="card")

        def direct_measured() -> tuple[float, float]:
            result = timed(direct)
            self._expect_queued(sends)
            return result

        return {
            "outbox send() + commit": via_signal(parts.outbox_signal),
            "on_commit send() + commit": via_signal(parts.commit_signal),
            "commit + delay()": direct_measured,
        }

    def commit_figures(self, sends: int, rounds: int) -> dict[str, dict[str, float]]:
        variants = self.commit_variants(sends)
        warm = self.commit_variants(max(1, sends // 10))
        for run in warm.values():  # connections, caches, first imports
            run()
        return {name: figures(times, sends) for name, times in alternate(variants, rounds).items()}

    # -- relay drain rate

    def fill(self, count: int) -> list[dict[str, Any]]:
        """*count* sends while the broker is down, 100 per transaction; wait until every
        failed publish has released its row; return the rows as the relay finds them."""
        import sqlalchemy as sa
        from sqlalchemy.orm import Session

        parts, table = self.parts, self.outbox
        with self.engine.begin() as connection:
            connection.execute(table.delete())
        logger = logging.getLogger("tocsin.contrib.celery")
        quiet, logger.disabled = logger.disabled, True  # one warning per failed publish
        try:
            for start in range(0, count, 100):
                with Session(self.engine, expire_on_commit=False) as session:
                    for order in self._orders(min(100, count - start)):
                        session.add(order)
                        session.flush()
                        parts.down_signal.send(
                            sender=Order, instance=order, amount="19.99", note="card"
                        )
                    session.commit()

            def released() -> bool:
                with self.engine.connect() as connection:
                    claimed = connection.execute(
                        sa.select(sa.func.count()).where(table.c.claimed_by.is_not(None))
                    ).scalar_one()
                return claimed == 0

            wait_until(released, 120, "the failed publishes to release their rows")
        finally:
            logger.disabled = quiet
        with self.engine.connect() as connection:
            rows = [
                dict(row._mapping)
                for row in connection.execute(sa.select(table).order_by(table.c.id))
            ]
        if len(rows) != count or any(row["published_at"] is not None for row in rows):
            raise RuntimeError(f"{self.kind}: the fill left {len(rows)} rows, not {count}")
        for row in rows:
            del row["id"]
        return rows

    def restore(self, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            connection.execute(self.outbox.delete())
            connection.execute(self.outbox.insert(), rows)

    def drain_figures(self, count: int, rounds: int, batch: int) -> dict[str, dict[str, float]]:
        from tocsin.contrib.celery.outbox import relay_once

        app, delay = self.parts.app, self.parts.plain.delay
        snapshot = self.fill(count)
        payloads = [{"order_id": i, "amount": "19.99", "note": "card"} for i in range(count)]

        def relay() -> None:
            while relay_once(self.engine, app, batch=batch):
                pass

        def relay_measured() -> tuple[float, float]:
            self.restore(snapshot)
            result = timed(relay)
            self._expect_queued(count)
            return result

        def direct_measured() -> tuple[float, float]:
            def run() -> None:
                for named in payloads:
                    delay(**named)

            result = timed(run)
            self._expect_queued(count)
            return result

        variants = {"relay_once() drain": relay_measured, "delay() x N": direct_measured}
        return {name: figures(times, count) for name, times in alternate(variants, rounds).items()}


# -- the run -------------------------------------------------------------------------


def print_commit_table(kind: str, found: dict[str, dict[str, float]], options: Any) -> float:
    base = found["commit + delay()"]
    ratio = found["outbox send() + commit"]["best_us"] / base["best_us"]
    rows = [
        [
            name,
            f"{f['best_us']:,.0f}",
            f"{f['median_us']:,.0f}",
            f"{f['best_us'] / base['best_us']:.2f}x",
            f"{f['median_us'] / base['median_us']:.2f}x",
            f"{f['cpu_us']:,.0f}",
        ]
        for name, f in found.items()
    ]
    verdict = "met" if ratio <= COMMIT_GOAL else "NOT met"
    print(
        table(
            ["per unit of work", "best us", "median us", "vs delay", "(median)", "CPU us"],
            rows,
            title=f"{kind}: INSERT + commit + enqueue, {options.rounds} rounds of "
            f"{options.sends} (goal: outbox <= {COMMIT_GOAL}x commit + delay(); {verdict})",
        )
    )
    return ratio


def print_drain_table(kind: str, found: dict[str, dict[str, float]], options: Any) -> float:
    base = found["delay() x N"]
    ratio = found["relay_once() drain"]["best_per_second"] / base["best_per_second"]
    rows = [
        [
            name,
            f"{f['best_per_second']:,.0f}",
            f"{f['median_per_second']:,.0f}",
            f"{f['best_per_second'] / base['best_per_second']:.2f}x",
            f"{f['cpu_us']:,.0f}",
        ]
        for name, f in found.items()
    ]
    verdict = "met" if ratio >= DRAIN_GOAL else "NOT met"
    print(
        table(
            ["publishing N pending", "best msg/s", "median msg/s", "vs delay", "CPU us/msg"],
            rows,
            title=f"{kind}: relay drain, {options.rounds} rounds of {options.rows} rows, "
            f"batch {options.batch} (goal: relay >= {DRAIN_GOAL}x delay(); {verdict})",
        )
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=1000, help="units of work per round")
    parser.add_argument("--rows", type=int, default=3000, help="pending rows the relay drains")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per variant")
    parser.add_argument("--batch", type=int, default=100, help="relay_once(batch=...)")
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    args, _ = parser.parse_known_args(argv)
    if args.quick:
        args.sends, args.rows, args.rounds = 200, 500, 3
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    unknown = set(kinds) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")

    import redis

    results: dict[str, Any] = {}
    described: dict[str, str] = {}
    skipped: dict[str, str] = {}
    folder = work_folder()
    try:
        with terminate_cleanly(), contextlib.ExitStack() as stack:
            url = stack.enter_context(redis_server(folder))
            client = redis.Redis.from_url(url)
            stack.callback(client.close)
            redis_version = client.info("server")["redis_version"]
            parts = Parts(url)
            stack.callback(parts.close)
            print(f"Transactional outbox on Celery + Redis, {python_description()}", flush=True)
            urls: dict[str, str] = {}
            if "sqlite" in kinds:
                urls["sqlite"] = f"sqlite:///{folder / 'outbox.db'}"
            if "postgresql" in kinds:
                bindir = find_pg_bindir()
                if bindir is None:
                    skipped["postgresql"] = (
                        "no PostgreSQL server binaries (initdb, postgres) found: install "
                        f"the 'postgresql' package, or set {PG_BINDIR_ENV} to their folder"
                    )
                    print(f"PostgreSQL skipped: {skipped['postgresql']}", flush=True)
                else:
                    urls["postgresql"] = stack.enter_context(
                        postgresql_server(bindir, folder / "pg")
                    )
            for kind, db_url in urls.items():
                database = Database(kind, db_url, parts, client)
                stack.callback(database.close)
                described[kind] = database.describe()
                print(f"{kind}: {described[kind]}; measuring...", flush=True)
                commit = database.commit_figures(args.sends, args.rounds)
                drain = database.drain_figures(args.rows, args.rounds, args.batch)
                results[kind] = {"commit": commit, "drain": drain}
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    versions = environment("sqlalchemy", "celery", "kombu", "redis", "psycopg")
    print()
    print(
        "Environment: "
        + ", ".join(f"{name} {version}" for name, version in versions["versions"].items())
        + f", redis-server {redis_version}, {os.cpu_count()} CPUs"
    )
    for kind, text in described.items():
        print(f"  {kind}: {text}")
    for kind, found in results.items():
        print()
        found["outbox_vs_delay"] = print_commit_table(kind, found["commit"], args)
        print()
        found["relay_vs_delay"] = print_drain_table(kind, found["drain"], args)
    print()
    summary = [
        [
            kind,
            f"{found['outbox_vs_delay']:.2f}x",
            "met" if found["outbox_vs_delay"] <= COMMIT_GOAL else "NOT met",
            f"{found['relay_vs_delay']:.2f}x",
            "met" if found["relay_vs_delay"] >= DRAIN_GOAL else "NOT met",
        ]
        for kind, found in results.items()
    ]
    summary += [[kind, "skipped", "", "skipped", ""] for kind in skipped]
    print(
        table(
            ["database", "outbox/commit+delay", f"<= {COMMIT_GOAL}x", "relay/delay", "goal"],
            summary,
            title=f"Summary (goals: outbox <= {COMMIT_GOAL}x, relay >= {DRAIN_GOAL}x)",
        )
    )
    environment_data = {
        **versions,
        "redis_server": redis_version,
        "sqlite": sqlite3.sqlite_version,
        "databases": described,
    }
    path = write_results(
        "outbox",
        {
            "environment": environment_data,
            "options": vars(args),
            "goals": {"outbox_vs_delay_max": COMMIT_GOAL, "relay_vs_delay_min": DRAIN_GOAL},
            "skipped": skipped,
            "results": results,
        },
    )
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
