"""SQLAlchemy benchmark: what wiring tocsin's model signals costs an ORM flush.

    python bench/bench_sqlalchemy.py            # or: python bench/run.py sqlalchemy
    python bench/bench_sqlalchemy.py --quick    # a smoke run, not for quoting

Three ORM workloads on SQLite in memory (one connection, ``StaticPool``), each on
``--rows`` rows of a five-column model:

* insert: construct the objects, ``add_all``, ``flush`` (sends pre_init, post_init,
  pre_save, post_save per row when wired);
* update: change two columns of every loaded row, ``flush`` (pre_save, post_save);
* delete: ``session.delete`` every loaded row, ``flush`` (pre_delete, post_delete).

Each is measured in three modes: **unwired** (tocsin not connected: plain SQLAlchemy),
**wired** (``connect_signals(Base)`` with no receiver connected, so every event only
asks ``has_listeners`` and returns) and **wired + receivers** (one do-nothing receiver on
each of those signals, for reference).  Only the ORM work is timed (the loading of rows
for update/delete and the rollback that restores the table are not), with garbage
collection off, in CPU time of the process (``time.process_time``: SQLite in memory
runs in the process, and CPU time does not count the moments a busy machine gives the
CPU to someone else, which wall-clock time does).  Rounds interleave the modes in a
shuffled order, so machine noise hits them alike; the best round per mode is kept.
The figure that matters is the ratio wired / unwired: the price of having the
integration installed while nobody listens.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from _common import environment, python_description, table, write_results
from tocsin.contrib.sqlalchemy import connect_signals, disconnect_signals
from tocsin.signals import post_delete, post_init, post_save, pre_delete, pre_init, pre_save


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    colour: Mapped[str] = mapped_column(String(20), default="red")
    quantity: Mapped[int] = mapped_column(default=0)
    price: Mapped[float] = mapped_column(default=0.0)


MODES = ("unwired", "wired", "wired + receivers")
WORKLOADS = ("insert", "update", "delete")
SIGNALS = (pre_init, post_init, pre_save, post_save, pre_delete, post_delete)


def nothing(sender: Any, **named: Any) -> None:
    return None


@contextmanager
def mode(name: str) -> Iterator[None]:
    with ExitStack() as stack:
        if name != "unwired":
            connect_signals(Base)
            stack.callback(disconnect_signals, Base)
        if name == "wired + receivers":
            for signal in SIGNALS:
                stack.enter_context(signal.connected_to(nothing, sender=Item))
        yield


def timed(work: Callable[[], None]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        work()
        return time.process_time() - start
    finally:
        gc.enable()


def insert(engine: Engine, rows: int) -> float:
    with Session(engine) as session:

        def work() -> None:
            session.add_all([Item(name=f"item {i}", quantity=i, price=1.5) for i in range(rows)])
            session.flush()

        elapsed = timed(work)
        session.rollback()
    return elapsed


def update(engine: Engine, rows: int) -> float:
    with Session(engine) as session:
        items = session.scalars(select(Item)).all()
        assert len(items) == rows

        def work() -> None:
            for item in items:
                item.colour = "blue"
                item.quantity += 1
            session.flush()

        elapsed = timed(work)
        session.rollback()
    return elapsed


def delete(engine: Engine, rows: int) -> float:
    with Session(engine) as session:
        items = session.scalars(select(Item)).all()

        def work() -> None:
            for item in items:
                session.delete(item)
            session.flush()

        elapsed = timed(work)
        session.rollback()
    return elapsed


RUNNERS: dict[str, Callable[[Engine, int], float]] = {
    "insert": insert,
    "update": update,
    "delete": delete,
}


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run.py sqlalchemy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=2000, help="rows per flush (default 2000)")
    parser.add_argument("--rounds", type=int, default=25, help="rounds per mode (default 25)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run, not for quoting")
    args = parser.parse_args(list(argv))
    if args.quick:
        args.rows, args.rounds = 300, 3
    rng = random.Random(args.seed)

    env = environment("sqlalchemy")
    print(f"Python: {python_description()}; SQLAlchemy {sqlalchemy.__version__}")
    print(f"{args.rows} rows per flush, {args.rounds} rounds, SQLite in memory")

    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Item(name=f"item {i}", quantity=i) for i in range(args.rows)])
        session.commit()

    times: dict[str, dict[str, list[float]]] = {w: {m: [] for m in MODES} for w in WORKLOADS}
    for workload in WORKLOADS:  # one warm-up per mode
        for name in MODES:
            with mode(name):
                RUNNERS[workload](engine, args.rows)
    for _ in range(args.rounds):
        for workload in WORKLOADS:
            order = list(MODES)
            rng.shuffle(order)
            for name in order:
                with mode(name):
                    times[workload][name].append(RUNNERS[workload](engine, args.rows))
    engine.dispose()

    def per_row(seconds: float) -> float:
        return seconds / args.rows * 1e6

    rows_out = []
    results: dict[str, Any] = {}
    for workload in WORKLOADS:
        best = {name: min(times[workload][name]) for name in MODES}
        median = {name: statistics.median(times[workload][name]) for name in MODES}
        ratio = best["wired"] / best["unwired"]
        ratio_receivers = best["wired + receivers"] / best["unwired"]
        rows_out.append(
            [
                workload,
                f"{per_row(best['unwired']):.2f}",
                f"{per_row(best['wired']):.2f}",
                f"{ratio:.3f}",
                f"{per_row(best['wired + receivers']):.2f}",
                f"{ratio_receivers:.3f}",
            ]
        )
        results[workload] = {
            "best_us_per_row": {name: per_row(best[name]) for name in MODES},
            "median_us_per_row": {name: per_row(median[name]) for name in MODES},
            "ratio_wired_over_unwired": ratio,
            "ratio_receivers_over_unwired": ratio_receivers,
        }
    print()
    print(
        table(
            [
                "workload",
                "unwired µs/row",
                "wired µs/row",
                "wired/unwired",
                "+receivers µs/row",
                "+receivers/unwired",
            ],
            rows_out,
            title="ORM flush cost per row (best round)",
        )
    )
    path = write_results(
        "sqlalchemy",
        {
            "environment": env,
            "rows": args.rows,
            "rounds": args.rounds,
            "quick": args.quick,
            "results": results,
        },
    )
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
