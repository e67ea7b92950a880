"""Core benchmark: what ``Signal.send`` and connect/disconnect cost, against the peers.

**Send overhead.**  For each scenario and library, the factor is

    time of one send  /  time of a plain Python function doing the same calls by hand

where the plain function uses that library's own calling convention, over the same
receiver objects, called with the same arguments as the send:

* tocsin, django.dispatch: ``r(signal=sig, sender=sender, **named)``, collecting
  ``(r, response)`` pairs (what their ``send`` returns);
* blinker: ``r(sender, **kwargs)``, collecting pairs;
* psygnal: ``r(*args)``, collecting nothing (``emit`` returns None).  A factor against
  a collecting loop is kept too, for reference, in the JSON and a footnote.

For the collecting conventions, both an explicit ``for``/``append`` loop and a list
comprehension are measured and the faster one on this Python is the baseline, case by
case, so the denominator is as small as plain Python gets; which one won is reported.
A factor of 1.00 means "as fast as the hand-written loop"; below 1.00 is possible only
where the library skips work the loop does (e.g. nothing connected at all).

Receivers are distinct module-level functions (compiled from generated source, kept
alive by a list) connected weakly, the default, in every library except psygnal,
which holds plain functions strongly whatever one asks.  The sender is a class; sends
pass two keyword arguments (psygnal: two positional ones).  Every receiver is connected
for that sender (psygnal: to that emitter's signal); ``--any-sender`` connects the
1/10/100-receiver scenarios with ``sender=None`` instead.  "1 + 1000 on other senders" adds
1000 receivers, each connected for its own other sender class (psygnal: its own emitter),
and the baseline calls just the one receiver.

Timing: ``timeit`` statement strings in a globals namespace (no lambdas), garbage
collection off while timing (timeit's default), each library warmed up first (tocsin
and django with use_caching build their per-sender caches on the first send).  Then
many rounds; each round runs one repeat of every statement in a shuffled order, so
machine noise is spread over all libraries alike; the minimum per statement is kept.

**Connect + disconnect.**  N fresh receivers are connected to a fresh signal, then all
disconnected in a shuffled order (the same order for every library), for N = 1k and
20k, once with ``sender=None`` (blinker: ``ANY``; psygnal: one emitter) and once with a
distinct sender per receiver (psygnal: a distinct emitter per receiver).  Reported:
microseconds per operation ((connect time + disconnect time) / 2N, gc off while
timing; each cycle is timed in chunks of 256 operations and each chunk's best over
several cycles is added up, which sheds a shared machine's noise) and the 20k/1k ratio,
which is 1.0 for an O(1) design.
A cycle that runs past a time cap (django is O(n) per operation, about a minute per
20k cycle) is stopped; its figure is then the mean over the operations it finished,
which ran at smaller sizes than the rest would have, so it understates the real cost.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import blinker
import django.dispatch
import psygnal

import tocsin
import tocsin._send as tocsin_send
from _common import environment, python_description, table, write_results

# -- what is measured --------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    receivers: int  # connected for the measured sender
    others: int  # connected, one each, for other senders
    goal: float  # tocsin's factor must not exceed this


#: Goals from issue 12, for both call shapes (the C send; the pure one has none).
SCENARIOS = (
    Scenario("0", "0 receivers", 0, 0, 0.30),
    Scenario("1", "1 receiver", 1, 0, 0.60),
    Scenario("10", "10 receivers", 10, 0, 0.55),
    Scenario("100", "100 receivers", 100, 0, 0.55),
    Scenario("1+1000", "1 + 1000 on other senders", 1, 1000, 0.60),
)

#: Result columns, in table order.  "kw" columns send with the sender by keyword,
#: ``send(sender=S, ...)``, as Django and its documentation do.
COLUMNS = (
    "tocsin",
    "tocsin_kw",
    "tocsin_robust",
    "django",
    "django_kw",
    "django_cached",
    "django_cached_kw",
    "blinker",
    "psygnal_emit",
    "psygnal_emit_fast",
)
LABELS = {
    "tocsin": "tocsin send(S)",
    "tocsin_kw": "tocsin send(sender=S)",
    "tocsin_robust": "tocsin send_robust(S)",
    "django": "django",
    "django_kw": "django sender=",
    "django_cached": "django cached",
    "django_cached_kw": "django cached sender=",
    "blinker": "blinker",
    "psygnal_emit": "psygnal emit",
    "psygnal_emit_fast": "psygnal emit_fast",
}
#: The tocsin sends held to the goals and compared with the peers.
TOCSIN_SENDS = ("tocsin", "tocsin_kw")
PEERS = tuple(c for c in COLUMNS if not c.startswith("tocsin"))

CD_LIBRARIES = ("tocsin", "django", "blinker", "psygnal")
CD_VARIANTS = {"any": "sender=None", "distinct": "distinct senders"}
CD_RATIO_GOAL = 1.5

SEND_ARGS = "a=1, b=2"  # the two keyword arguments of every send
EMIT_ARGS = "1, 2"  # psygnal's two positional arguments

# -- receivers and baselines -------------------------------------------------------------

_TEMPLATES = {
    # tocsin and django call r(signal=..., sender=..., a=.., b=..); blinker r(sender, a=.., b=..)
    "named": "def {name}(sender, **kwargs):\n    return None\n",
    # psygnal calls r(1, 2)
    "positional": "def {name}(a, b):\n    return None\n",
}


def make_receivers(n: int, convention: str, prefix: str) -> list[Callable[..., Any]]:
    """*n* distinct plain functions, each with its own code, as if written in a module."""
    if not n:
        return []
    namespace: dict[str, Any] = {"__name__": f"bench_receivers_{prefix}"}
    names = [f"{prefix}_{i}" for i in range(n)]
    source = "".join(_TEMPLATES[convention].format(name=name) for name in names)
    exec(compile(source, f"<{prefix} receivers>", "exec"), namespace)
    return [namespace[name] for name in names]


def named_baselines(receivers: Sequence[Any], signal: Any) -> dict[str, Callable[..., Any]]:
    """tocsin's and django's convention, by hand: a for/append loop and a comprehension."""
    receivers = tuple(receivers)

    def loop(sender: Any, **named: Any) -> list[tuple[Any, Any]]:
        responses = []
        for r in receivers:
            responses.append((r, r(signal=signal, sender=sender, **named)))
        return responses

    def comp(sender: Any, **named: Any) -> list[tuple[Any, Any]]:
        return [(r, r(signal=signal, sender=sender, **named)) for r in receivers]

    return {"loop": loop, "comp": comp}


def blinker_baselines(receivers: Sequence[Any]) -> dict[str, Callable[..., Any]]:
    """blinker's convention, by hand."""
    receivers = tuple(receivers)

    def loop(sender: Any, **kwargs: Any) -> list[tuple[Any, Any]]:
        responses = []
        for r in receivers:
            responses.append((r, r(sender, **kwargs)))
        return responses

    def comp(sender: Any, **kwargs: Any) -> list[tuple[Any, Any]]:
        return [(r, r(sender, **kwargs)) for r in receivers]

    return {"loop": loop, "comp": comp}


def psygnal_baselines(receivers: Sequence[Any]) -> dict[str, Callable[..., Any]]:
    """psygnal's convention, by hand: calls only (the baseline), and collecting (reference)."""
    receivers = tuple(receivers)

    def loop(*args: Any) -> None:
        for r in receivers:
            r(*args)

    def collect_loop(*args: Any) -> list[tuple[Any, Any]]:
        responses = []
        for r in receivers:
            responses.append((r, r(*args)))
        return responses

    def collect_comp(*args: Any) -> list[tuple[Any, Any]]:
        return [(r, r(*args)) for r in receivers]

    return {"loop": loop, "collect_loop": collect_loop, "collect_comp": collect_comp}


class PsygnalEmitter:
    """An object with a psygnal signal: psygnal's equivalent of a sender."""

    changed = psygnal.Signal(object, object)


class Sender:
    """A weakly referenceable sender for the connect/disconnect benchmark."""

    __slots__ = ("__weakref__",)


# -- send setups ----------------------------------------------------------------------


@dataclass
class Setup:
    """One library's objects for one scenario, and the statements to time."""

    library: str
    scenario: Scenario
    namespace: dict[str, Any]
    sends: dict[str, str]  # column -> statement
    baselines: dict[str, str]  # "loop" / "comp" -> statement; the best is the baseline
    references: dict[str, str] = field(default_factory=dict)  # informational only


def _other_senders(n: int) -> list[type]:
    return [type(f"Other{i}", (), {}) for i in range(n)]


def setup_tocsin(sc: Scenario, any_sender: bool) -> Setup:
    sig = tocsin.Signal(name="bench.core")
    sender = type("Sender", (), {})
    rs = make_receivers(sc.receivers, "named", "tocsin")
    others = _other_senders(sc.others)
    other_rs = make_receivers(sc.others, "named", "tocsin_other")
    target = None if any_sender and not sc.others else sender
    for r in rs:
        sig.connect(r, sender=target)
    for r, other in zip(other_rs, others, strict=True):
        sig.connect(r, sender=other)
    assert len(sig.send(sender, a=1, b=2)) == sc.receivers  # also builds the cache
    ns = {"sig": sig, "sender": sender, "keep": (rs, others, other_rs)}
    ns.update(named_baselines(rs, sig))
    return Setup(
        "tocsin",
        sc,
        ns,
        {
            "tocsin": f"sig.send(sender, {SEND_ARGS})",
            "tocsin_kw": f"sig.send(sender=sender, {SEND_ARGS})",
            "tocsin_robust": f"sig.send_robust(sender, {SEND_ARGS})",
        },
        {"loop": f"loop(sender, {SEND_ARGS})", "comp": f"comp(sender, {SEND_ARGS})"},
    )


def setup_django(sc: Scenario, any_sender: bool, cached: bool) -> Setup:
    sig = django.dispatch.Signal(use_caching=cached)
    sender = type("Sender", (), {})
    prefix = "django_cached" if cached else "django"
    rs = make_receivers(sc.receivers, "named", prefix)
    others = _other_senders(sc.others)
    other_rs = make_receivers(sc.others, "named", f"{prefix}_other")
    target = None if any_sender and not sc.others else sender
    for r in rs:
        sig.connect(r, sender=target)
    for r, other in zip(other_rs, others, strict=True):
        sig.connect(r, sender=other)
    assert len(sig.send(sender, a=1, b=2)) == sc.receivers
    ns = {"sig": sig, "sender": sender, "keep": (rs, others, other_rs)}
    ns.update(named_baselines(rs, sig))
    return Setup(
        prefix,
        sc,
        ns,
        {
            prefix: f"sig.send(sender, {SEND_ARGS})",
            f"{prefix}_kw": f"sig.send(sender=sender, {SEND_ARGS})",
        },
        {"loop": f"loop(sender, {SEND_ARGS})", "comp": f"comp(sender, {SEND_ARGS})"},
    )


def setup_blinker(sc: Scenario, any_sender: bool) -> Setup:
    sig = blinker.Signal()
    sender = type("Sender", (), {})
    rs = make_receivers(sc.receivers, "named", "blinker")
    others = _other_senders(sc.others)
    other_rs = make_receivers(sc.others, "named", "blinker_other")
    target = None if any_sender and not sc.others else sender
    for r in rs:
        sig.connect(r, sender=blinker.ANY if target is None else target)
    for r, other in zip(other_rs, others, strict=True):
        sig.connect(r, sender=other)
    assert len(sig.send(sender, a=1, b=2)) == sc.receivers
    ns = {"sig": sig, "sender": sender, "keep": (rs, others, other_rs)}
    ns.update(blinker_baselines(rs))
    return Setup(
        "blinker",
        sc,
        ns,
        {"blinker": f"sig.send(sender, {SEND_ARGS})"},
        {"loop": f"loop(sender, {SEND_ARGS})", "comp": f"comp(sender, {SEND_ARGS})"},
    )


def setup_psygnal(sc: Scenario, any_sender: bool) -> Setup:
    emitter = PsygnalEmitter()
    sig = emitter.changed  # the SignalInstance, looked up once: psygnal's best case
    rs = make_receivers(sc.receivers, "positional", "psygnal")
    others = [PsygnalEmitter() for _ in range(sc.others)]
    other_rs = make_receivers(sc.others, "positional", "psygnal_other")
    for r in rs:
        sig.connect(r)
    for r, other in zip(other_rs, others, strict=True):
        other.changed.connect(r)
    assert len(sig) == sc.receivers
    sig.emit(1, 2)
    sig.emit_fast(1, 2)
    ns = {"sig": sig, "keep": (emitter, rs, others, other_rs)}
    ns.update(psygnal_baselines(rs))
    return Setup(
        "psygnal",
        sc,
        ns,
        {
            "psygnal_emit": f"sig.emit({EMIT_ARGS})",
            "psygnal_emit_fast": f"sig.emit_fast({EMIT_ARGS})",
        },
        {"loop": f"loop({EMIT_ARGS})"},
        {
            "collect_loop": f"collect_loop({EMIT_ARGS})",
            "collect_comp": f"collect_comp({EMIT_ARGS})",
        },
    )


def build_setups(any_sender: bool) -> list[Setup]:
    setups = []
    for sc in SCENARIOS:
        setups += [
            setup_tocsin(sc, any_sender),
            setup_django(sc, any_sender, cached=False),
            setup_django(sc, any_sender, cached=True),
            setup_blinker(sc, any_sender),
            setup_psygnal(sc, any_sender),
        ]
    return setups


# -- timing sends ----------------------------------------------------------------------


@dataclass
class Measure:
    setup: Setup
    role: str  # "send", "baseline" or "reference"
    name: str  # a column for sends, a baseline kind otherwise
    statement: str
    timer: timeit.Timer
    number: int = 1
    samples: list[float] = field(default_factory=list)  # seconds per call, one per round

    @property
    def best(self) -> float:
        return min(self.samples)


def calibrate(timer: timeit.Timer, target: float) -> int:
    """How many calls make one repeat last about *target* seconds (also a warm-up)."""
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= target / 10 or number >= 10**7:
            return max(1, math.ceil(number * target / max(elapsed, 1e-9)))
        number *= 10


def time_sends(setups: list[Setup], rounds: int, target: float, seed: int) -> list[Measure]:
    measures = []
    for setup in setups:
        for role, statements in (
            ("send", setup.sends),
            ("baseline", setup.baselines),
            ("reference", setup.references),
        ):
            for name, statement in statements.items():
                timer = timeit.Timer(statement, globals=setup.namespace)
                measures.append(Measure(setup, role, name, statement, timer))
    for measure in measures:  # warm-up and calibration
        measure.number = calibrate(measure.timer, target)
    rng = random.Random(seed)
    order = list(measures)
    for index in range(rounds):
        rng.shuffle(order)
        for measure in order:
            measure.samples.append(measure.timer.timeit(measure.number) / measure.number)
        if (index + 1) % 10 == 0 or index + 1 == rounds:
            print(f"  send rounds: {index + 1}/{rounds}", flush=True)
    return measures


def send_results(measures: list[Measure]) -> list[dict[str, Any]]:
    """Per scenario: each column's factor, times, and tocsin's verdict."""
    by_setup: dict[int, list[Measure]] = {}
    for measure in measures:
        by_setup.setdefault(id(measure.setup), []).append(measure)
    rows = []
    for sc in SCENARIOS:
        columns: dict[str, dict[str, Any]] = {}
        for group in by_setup.values():
            setup = group[0].setup
            if setup.scenario is not sc:
                continue
            baselines = {m.name: m.best for m in group if m.role == "baseline"}
            kind = min(baselines, key=baselines.__getitem__)
            references = {m.name: m.best for m in group if m.role == "reference"}
            for send in (m for m in group if m.role == "send"):
                entry = {
                    "factor": send.best / baselines[kind],
                    "send_ns": send.best * 1e9,
                    "send_median_ns": statistics.median(send.samples) * 1e9,
                    "baseline_ns": baselines[kind] * 1e9,
                    "baseline": kind,
                    "baselines_ns": {k: v * 1e9 for k, v in baselines.items()},
                    "statement": send.statement,
                }
                if references:
                    collecting = min(references.values())
                    entry["collecting_baseline_ns"] = collecting * 1e9
                    entry["factor_vs_collecting_loop"] = send.best / collecting
                columns[send.name] = entry
        tocsin_factor = max(columns[c]["factor"] for c in TOCSIN_SENDS)
        best_peer = min(PEERS, key=lambda c: columns[c]["factor"])
        rows.append(
            {
                "scenario": sc.key,
                "label": sc.label,
                "receivers": sc.receivers,
                "other_senders": sc.others,
                "goal": sc.goal,
                "results": {c: columns[c] for c in COLUMNS},
                "tocsin_meets_goal": tocsin_factor <= sc.goal,
                "best_peer": best_peer,
                "tocsin_lowest": tocsin_factor < columns[best_peer]["factor"],
            }
        )
    return rows


# -- connect + disconnect --------------------------------------------------------------

CHUNK = 256  # operations between two looks at the clock


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def _drive(chunks: list[list[Any]], deadline: float) -> list[float]:
    """Run the calls, chunk by chunk; each item is (fn, arg) or (fn, arg1, arg2).

    Returns each chunk's duration; fewer than ``len(chunks)`` once *deadline* passed.
    """
    times = []
    two = bool(chunks) and len(chunks[0][0]) == 3
    clock = time.perf_counter
    for chunk in chunks:
        start = clock()
        if two:
            for fn, a, b in chunk:
                fn(a, b)
        else:
            for fn, a in chunk:
                fn(a)
        end = clock()
        times.append(end - start)
        if end > deadline:
            break
    return times


@dataclass
class Workload:
    """Receivers, senders and disconnect order for one size, shared by all libraries."""

    n: int
    named: list[Callable[..., Any]]
    positional: list[Callable[..., Any]]
    senders: list[Sender]
    emitters: list[Any]  # psygnal SignalInstances, one per receiver
    order: list[int]


def make_workload(n: int, seed: int) -> Workload:
    order = list(range(n))
    random.Random(seed + n).shuffle(order)
    return Workload(
        n,
        make_receivers(n, "named", f"cd{n}"),
        make_receivers(n, "positional", f"cdp{n}"),
        [Sender() for _ in range(n)],
        [PsygnalEmitter().changed for _ in range(n)],
        order,
    )


def _ops(library: str, variant: str, w: Workload) -> tuple[Any, list[Any], list[Any]]:
    """A fresh signal, its connect calls and its disconnect calls (in shuffled order)."""
    if library == "psygnal":
        if variant == "any":
            sig = PsygnalEmitter().changed
            connects = [(sig.connect, r) for r in w.positional]
            disconnects = [(sig.disconnect, w.positional[i]) for i in w.order]
        else:
            sig = w.emitters
            connects = [(e.connect, r) for e, r in zip(w.emitters, w.positional, strict=True)]
            disconnects = [(w.emitters[i].disconnect, w.positional[i]) for i in w.order]
        return sig, connects, disconnects
    if library == "tocsin":
        sig = tocsin.Signal(name="bench.cd")
        anyone: Any = None
    elif library == "django":
        sig = django.dispatch.Signal()
        anyone = None
    else:
        sig = blinker.Signal()
        anyone = blinker.ANY
    senders = [anyone] * w.n if variant == "any" else w.senders
    connect, disconnect = sig.connect, sig.disconnect
    connects = [(connect, r, s) for r, s in zip(w.named, senders, strict=True)]
    disconnects = [(disconnect, w.named[i], senders[i]) for i in w.order]
    return sig, connects, disconnects


def _check_empty(library: str, variant: str, sig: Any) -> None:
    if library == "tocsin" or library == "django":
        assert not sig.receivers, f"{library} kept receivers after disconnecting them all"
    elif library == "psygnal":
        assert all(len(s) == 0 for s in (sig if variant == "distinct" else [sig]))


@dataclass
class CDCase:
    """One library, one sender variant, one size: repeated connect+disconnect cycles.

    Each cycle is timed chunk by chunk (256 operations, about a millisecond), and the
    result adds up each chunk's best time over the cycles: the cycles do identical work,
    and machine noise only ever adds time, so this discards the noise of a shared
    machine better than the best whole cycle (also kept, as ``best_cycle_us``).
    """

    library: str
    variant: str
    workload: Workload
    repeats: int
    budget: float  # seconds: no new cycle starts once this much has been spent
    connect_best: list[float] = field(default_factory=list)  # per chunk, best so far
    disconnect_best: list[float] = field(default_factory=list)
    cycles: list[float] = field(default_factory=list)  # whole-cycle seconds
    capped: tuple[int, float] | None = None  # (operations done, seconds) of a stopped cycle
    spent: float = 0.0

    def wants_more(self) -> bool:
        if self.capped is not None or len(self.cycles) >= self.repeats:
            return False
        if not self.cycles:
            return True
        return self.spent + self.cycles[-1] <= self.budget

    def run_once(self, cap: float) -> None:
        sig, connects, disconnects = _ops(self.library, self.variant, self.workload)
        connect_chunks, disconnect_chunks = _chunks(connects), _chunks(disconnects)
        del connects, disconnects
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            deadline = t0 + cap
            connect_times = _drive(connect_chunks, deadline)
            disconnect_times = []
            if len(connect_times) == len(connect_chunks):
                disconnect_times = _drive(disconnect_chunks, deadline)
            t1 = time.perf_counter()
        finally:
            gc.enable()
        self.spent += t1 - t0
        if len(disconnect_times) < len(disconnect_chunks):
            done = sum(map(len, connect_chunks[: len(connect_times)]))
            done += sum(map(len, disconnect_chunks[: len(disconnect_times)]))
            self.capped = (done, t1 - t0)
            return
        _check_empty(self.library, self.variant, sig)
        self.cycles.append(t1 - t0)
        if not self.connect_best:
            self.connect_best, self.disconnect_best = connect_times, disconnect_times
        else:
            self.connect_best = list(map(min, self.connect_best, connect_times))
            self.disconnect_best = list(map(min, self.disconnect_best, disconnect_times))

    def result(self) -> dict[str, Any]:
        n = self.workload.n
        if self.capped is not None:
            done, seconds = self.capped
            return {
                "per_op_us": seconds / done * 1e6,
                "capped": True,
                "operations_done": done,
                "operations": 2 * n,
                "seconds": seconds,
            }
        connect, disconnect = sum(self.connect_best), sum(self.disconnect_best)
        return {
            "per_op_us": (connect + disconnect) / (2 * n) * 1e6,
            "connect_us": connect / n * 1e6,
            "disconnect_us": disconnect / n * 1e6,
            "best_cycle_us": min(self.cycles) / (2 * n) * 1e6,
            "capped": False,
            "cycles": len(self.cycles),
        }


def time_connect_disconnect(
    sizes: tuple[int, int], repeats: tuple[int, int], cap: float, seed: int
) -> dict[str, Any]:
    cases = []
    for n, reps in zip(sizes, repeats, strict=True):
        w = make_workload(n, seed)
        budget = 8.0 if n > sizes[0] else 3.0
        for library in CD_LIBRARIES:
            for variant in CD_VARIANTS:
                cases.append(CDCase(library, variant, w, reps, budget))
    rng = random.Random(seed)
    rounds = 0
    while pending := [c for c in cases if c.wants_more()]:
        rng.shuffle(pending)
        for case in pending:
            case.run_once(cap)
        rounds += 1
    small, large = sizes
    out: dict[str, Any] = {}
    for variant, label in CD_VARIANTS.items():
        per_library = {}
        for library in CD_LIBRARIES:
            found = {
                c.workload.n: c.result()
                for c in cases
                if (c.library, c.variant) == (library, variant)
            }
            ratio = found[large]["per_op_us"] / found[small]["per_op_us"]
            per_library[library] = {
                "sizes": {str(n): found[n] for n in sizes},
                "ratio": ratio,
                "ratio_is_lower_bound": found[large]["capped"],
            }
        tocsin_r = per_library["tocsin"]
        blinker_r = per_library["blinker"]
        below_blinker = all(
            tocsin_r["sizes"][str(n)]["per_op_us"] < blinker_r["sizes"][str(n)]["per_op_us"]
            for n in sizes
        )
        out[variant] = {
            "label": label,
            "results": per_library,
            "tocsin_ratio_ok": tocsin_r["ratio"] <= CD_RATIO_GOAL
            and not tocsin_r["ratio_is_lower_bound"],
            "tocsin_below_blinker": below_blinker,
        }
    return out


# -- reporting -------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def report_sends(rows: list[dict[str, Any]]) -> str:
    headers = ["scenario", *(LABELS[c] for c in COLUMNS), "goal", "tocsin"]
    body = []
    for row in rows:
        factors = [f"{row['results'][c]['factor']:.2f}" for c in COLUMNS]
        best = row["best_peer"]
        lowest = "lowest" if row["tocsin_lowest"] else f"NOT lowest ({LABELS[best]} is)"
        verdict = f"{_verdict(row['tocsin_meets_goal'])}, {lowest}"
        body.append([row["label"], *factors, f"<= {row['goal']:.2f}", verdict])
    factors_table = table(
        headers,
        body,
        "Send overhead factor = send time / plain-loop time (lower is better; 1.00 = as "
        "fast as calling the receivers by hand)",
    )
    headers = ["scenario", *(LABELS[c] for c in COLUMNS)]
    body = []
    for row in rows:
        cells = []
        for c in COLUMNS:
            entry = row["results"][c]
            cells.append(f"{entry['send_ns']:,.0f} / {entry['baseline_ns']:,.0f}")
        body.append([row["label"], *cells])
    times_table = table(headers, body, "Nanoseconds per call: send / baseline (best of rounds)")
    return f"{factors_table}\n\n{times_table}"


def baseline_summary(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    wins = {"loop": [], "comp": []}  # type: dict[str, list[str]]
    for row in rows:
        for c in ("tocsin", "tocsin_kw", "django", "django_cached", "blinker"):
            entry = row["results"][c]
            wins[entry["baseline"]].append(f"{LABELS[c]} @ {row['scenario']}")
    total = len(wins["loop"]) + len(wins["comp"])
    faster = (
        "explicit for/append loop"
        if len(wins["loop"]) >= len(wins["comp"])
        else "list comprehension"
    )
    line = (
        f"Baseline: faster of an explicit for/append loop and a list comprehension, per case. "
        f"On this Python the {faster} is faster: loop won {len(wins['loop'])}/{total} "
        f"collecting cases"
    )
    if wins["comp"]:
        line += f"; the comprehension won {', '.join(wins['comp'])}"
    line += ". psygnal's baseline is a plain call loop (emit collects nothing)."
    return line, {"faster_overall": faster, "loop_won": wins["loop"], "comp_won": wins["comp"]}


def psygnal_footnote(rows: list[dict[str, Any]]) -> str:
    parts = []
    for row in rows:
        emit = row["results"]["psygnal_emit"]["factor_vs_collecting_loop"]
        fast = row["results"]["psygnal_emit_fast"]["factor_vs_collecting_loop"]
        parts.append(f"{row['scenario']}: {emit:.2f}/{fast:.2f}")
    return (
        "For reference, psygnal emit/emit_fast against a loop that also collects "
        "(r, result) pairs: " + ", ".join(parts)
    )


def report_cd(cd: dict[str, Any], sizes: tuple[int, int]) -> str:
    small, large = sizes
    headers = ["senders", "N", *CD_LIBRARIES]
    body = []
    notes = []
    for _variant, block in cd.items():
        for n in sizes:
            cells = []
            for library in CD_LIBRARIES:
                entry = block["results"][library]["sizes"][str(n)]
                cell = f"{entry['per_op_us']:.2f}"
                if entry["capped"]:
                    cell += "*"
                    notes.append(
                        f"* {library}, {block['label']}, N={n:,}: stopped after "
                        f"{entry['operations_done']:,} of {entry['operations']:,} operations "
                        f"({entry['seconds']:.0f} s); mean over those, which ran at smaller sizes, "
                        "so it understates an O(n) library's full cycle"
                    )
                cells.append(cell)
            body.append([block["label"] if n == small else "", f"{n:,}", *cells])
        ratios = []
        for library in CD_LIBRARIES:
            result = block["results"][library]
            ratios.append(f"{'>' if result['ratio_is_lower_bound'] else ''}{result['ratio']:.2f}")
        body.append(
            [
                "",
                f"{large // 1000}k/{small // 1000}k" if small >= 1000 else f"{large}/{small}",
                *ratios,
            ]
        )
        body.append([""] * len(headers))
    body.pop()
    text = table(
        headers,
        body,
        "Connect + disconnect: microseconds per operation (lower is better), and the "
        f"{large:,}/{small:,} ratio (1.0 = O(1))",
    )
    goals = []
    for block in cd.values():
        t = block["results"]["tocsin"]
        goals.append(
            f"tocsin, {block['label']}: ratio {t['ratio']:.2f} <= {CD_RATIO_GOAL} "
            f"{_verdict(block['tocsin_ratio_ok'])}; below blinker at both sizes "
            f"{_verdict(block['tocsin_below_blinker'])}"
        )
    return "\n".join([text, *notes, *goals])


# -- asend with synchronous receivers ---------------------------------------------------


def time_asend(rounds: int, calls: int = 200, receivers: int = 10) -> dict[str, Any]:
    """``asend`` with only synchronous receivers, tocsin against Django (cached): both
    run the receivers in one ``sync_to_async`` hop, so this is mostly that hop."""
    import asyncio

    tocsin_signal = tocsin.Signal(name="bench.asend")
    django_signal = django.dispatch.Signal(use_caching=True)
    sender = type("Sender", (), {})
    keep = []
    for library, sig in (("tocsin", tocsin_signal), ("django", django_signal)):
        for r in make_receivers(receivers, "named", f"asend_{library}"):
            keep.append(r)
            sig.connect(r, sender=sender)
    signals = {"tocsin": tocsin_signal, "django": django_signal}
    best = dict.fromkeys(signals, math.inf)

    async def run() -> None:
        for sig in signals.values():  # warm-up: caches and the executor's thread
            await sig.asend(sender, a=1, b=2)
        for index in range(rounds):
            order = list(signals.items())
            if index % 2:
                order.reverse()
            for name, sig in order:
                started = time.perf_counter()
                for _ in range(calls):
                    await sig.asend(sender, a=1, b=2)
                best[name] = min(best[name], (time.perf_counter() - started) / calls)

    asyncio.run(run())
    del keep
    return {
        "receivers": receivers,
        "us_per_asend": {name: seconds * 1e6 for name, seconds in best.items()},
        "tocsin_vs_django": best["tocsin"] / best["django"],
    }


def report_robust_and_asend(rows: list[dict[str, Any]], asend: dict[str, Any]) -> str:
    ten = next(row for row in rows if row["scenario"] == "10")["results"]
    robust = ten["tocsin_robust"]["send_ns"] / ten["tocsin"]["send_ns"]
    lines = [
        f"send_robust / send at 10 receivers: {robust:.2f} (goal <= 1.20 "
        f"{_verdict(robust <= 1.2)})",
        f"asend, {asend['receivers']} sync receivers, us per call: "
        + ", ".join(f"{k} {v:.1f}" for k, v in asend["us_per_asend"].items())
        + f"; tocsin/django {asend['tocsin_vs_django']:.2f} "
        + f"(goal < 1 {_verdict(asend['tocsin_vs_django'] < 1)})",
    ]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py core", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="send rounds (default 100)")
    parser.add_argument("--target-ms", type=float, default=1.0, help="ms per timed repeat")
    parser.add_argument(
        "--any-sender",
        action="store_true",
        help="connect the 1/10/100-receiver scenarios with sender=None (blinker: ANY) "
        "instead of for the measured sender",
    )
    parser.add_argument("--cap", type=float, default=15.0, help="seconds per connect cycle")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run, not for quoting")
    args = parser.parse_args(list(argv))
    sizes, repeats = (1000, 20000), (20, 5)
    if args.quick:
        args.rounds, args.target_ms, args.cap = 5, 0.5, 2.0
        sizes, repeats = (1000, 4000), (2, 1)

    env = environment("django", "blinker", "psygnal")
    compiled = bool(getattr(psygnal, "_compiled", False))
    print(f"Python: {python_description()}")
    print(
        "Peers: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + f"; psygnal compiled (mypyc): {compiled}"
        + f"; tocsin C send (tocsin._speedups): {tocsin_send.COMPILED}"
        + " (TOCSIN_PURE_PYTHON=1 measures the pure-Python one)"
    )
    print(
        "Receivers connected for: "
        + ("any sender (sender=None)" if args.any_sender else "the measured sender")
    )
    started = time.perf_counter()
    setups = build_setups(args.any_sender)
    print(f"Timing sends: {len(setups)} setups, {args.rounds} rounds ...", flush=True)
    measures = time_sends(setups, args.rounds, args.target_ms / 1000, args.seed)
    rows = send_results(measures)
    del setups, measures
    gc.collect()
    print(f"Timing connect + disconnect at N = {sizes[0]:,} and {sizes[1]:,} ...", flush=True)
    cd = time_connect_disconnect(sizes, repeats, args.cap, args.seed)
    print("Timing asend with synchronous receivers ...", flush=True)
    asend = time_asend(3 if args.quick else 15)
    elapsed = time.perf_counter() - started

    baseline_line, baseline_info = baseline_summary(rows)
    print()
    print(baseline_line)
    print()
    print(report_sends(rows))
    print(psygnal_footnote(rows))
    print(report_robust_and_asend(rows, asend))
    print()
    print(report_cd(cd, sizes))
    goals = {
        "send_goals_met": all(r["tocsin_meets_goal"] for r in rows),
        "send_lowest_everywhere": all(r["tocsin_lowest"] for r in rows),
        "connect_disconnect_o1": all(b["tocsin_ratio_ok"] for b in cd.values()),
        "connect_disconnect_below_blinker": all(b["tocsin_below_blinker"] for b in cd.values()),
        "asend_below_django": asend["tocsin_vs_django"] < 1,
    }
    print()
    print("tocsin goals: " + ", ".join(f"{k} {_verdict(v)}" for k, v in goals.items()))
    data = {
        "benchmark": "core",
        "quick": args.quick,
        "environment": {**env, "psygnal_compiled": compiled, "tocsin_c_send": tocsin_send.COMPILED},
        "method": {
            "rounds": args.rounds,
            "receivers_connected_for": "any sender" if args.any_sender else "the measured sender",
            "target_ms_per_repeat": args.target_ms,
            "statistic": "min over rounds",
            "baseline": baseline_info,
            "connect_disconnect": {
                "sizes": list(sizes),
                "cycles": list(repeats),
                "cap_seconds": args.cap,
                "ratio_goal": CD_RATIO_GOAL,
            },
            "seconds": elapsed,
        },
        "columns": {c: LABELS[c] for c in COLUMNS},
        "send": rows,
        "connect_disconnect": cd,
        "asend": asend,
        "goals": goals,
    }
    path = write_results("core", data)
    print(f"Wrote {path} ({elapsed:.0f} s)")
    return 0
