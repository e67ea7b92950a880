"""Charts of the benchmark results, as SVG, for the documentation site.

    python bench/chart.py [--results bench/results] [--out docs/benchmarks]

reads the ``bench/results/*.json`` files that ``make bench`` writes (see _common.py and
each ``bench_<name>.py`` for their shape) and writes one SVG per chart into
``docs/benchmarks/``, plus ``charts.json``, which lists them with their titles and
captions (the documentation build reads it).  A results file that is missing, or
whose shape this script does not know, is skipped with a note: the page then says
which results are missing instead of failing.  Files are rewritten only when their
content changes, and charts whose results are gone are removed, so ``mkdocs serve``
(which runs this at every build) does not rebuild in a loop.

The SVG is written by hand (no plotting library): horizontal bars, one group per
scenario, one colour per library, a logarithmic axis where values span orders of
magnitude.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
OUT_DIR = BENCH_DIR.parent / "docs" / "benchmarks"
INDEX = "charts.json"

#: Colours of the series, in the order they first appear (colour-blind safe: Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999")


@dataclass(frozen=True)
class Chart:
    """One chart: the SVG, and the words the page shows with it."""

    file: str
    title: str
    caption: str
    svg: str


Group = tuple[str, Sequence[tuple[str, float | None]]]


def bar_chart(
    title: str,
    groups: Sequence[Group],
    unit: str,
    *,
    log: bool = False,
    marker: tuple[float, str] | None = None,
    digits: int = 2,
) -> str:
    """Horizontal grouped bars: one group of bars per ``(label, [(series, value)])``.

    A None value draws no bar (the series has no figure for that group).  *marker*
    draws a dashed vertical line at a value, labelled (e.g. ``(1.0, "hand-written
    loop")``).
    """
    series: list[str] = []
    for _, bars in groups:
        for name, _ in bars:
            if name not in series:
                series.append(name)
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    values = [v for _, bars in groups for _, v in bars if v is not None and v > 0]
    if marker is not None:
        values.append(marker[0])
    if not values:
        raise ValueError("nothing to draw")
    low, high = min(values), max(values)
    if log:
        lo = 10 ** math.floor(math.log10(low))
        hi = 10 ** math.ceil(math.log10(high))
        if hi <= lo:
            hi = lo * 10
    else:
        lo, hi = 0.0, _nice_ceiling(high)

    longest = max((len(label) for label, _ in groups), default=10)
    label_width, plot_width, value_width = max(120, int(longest * 6.8) + 20), 440, 80
    bar_height, bar_gap, group_gap = 14, 3, 16
    top = 56 + 18 * math.ceil(len(series) / 3)
    width = label_width + plot_width + value_width
    rows = sum(len(bars) for _, bars in groups)
    height = top + rows * (bar_height + bar_gap) + len(groups) * group_gap + 40

    def x(value: float) -> float:
        if log:
            fraction = (math.log10(value) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        else:
            fraction = (value - lo) / (hi - lo)
        return label_width + max(0.0, min(1.0, fraction)) * plot_width

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for index, name in enumerate(series):  # legend, three per line
        lx = 10 + (index % 3) * 230
        ly = 40 + (index // 3) * 18
        parts.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colour[name]}"/>')
        parts.append(f'<text x="{lx + 18}" y="{ly}">{escape(name)}</text>')
    axis_bottom = height - 40
    for tick in _ticks(lo, hi, log):
        tx = x(tick)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{axis_bottom}" '
            f'stroke="#ddd" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{tx:.1f}" y="{axis_bottom + 14}" text-anchor="middle" fill="#555">'
            f"{_format(tick, 3)}</text>"
        )
    parts.append(
        f'<text x="{label_width + plot_width / 2}" y="{axis_bottom + 32}" '
        f'text-anchor="middle" fill="#333">{escape(unit)}{" (log scale)" if log else ""}</text>'
    )
    y = top
    for label, bars in groups:
        group_top = y
        for name, value in bars:
            if value is not None and value > 0:
                end = x(value)
                parts.append(
                    f'<rect x="{label_width}" y="{y}" width="{max(1.0, end - label_width):.1f}" '
                    f'height="{bar_height}" fill="{colour[name]}">'
                    f"<title>{escape(name)}: {_format(value, digits)} {escape(unit)}</title></rect>"
                )
                parts.append(
                    f'<text x="{end + 4:.1f}" y="{y + bar_height - 3}" fill="#333">'
                    f"{_format(value, digits)}</text>"
                )
            y += bar_height + bar_gap
        middle = (group_top + y - bar_gap) / 2 + 4
        parts.append(
            f'<text x="{label_width - 8}" y="{middle:.1f}" text-anchor="end">{escape(label)}</text>'
        )
        y += group_gap
    if marker is not None:
        mx = x(marker[0])
        parts.append(
            f'<line x1="{mx:.1f}" y1="{top - 10}" x2="{mx:.1f}" y2="{axis_bottom}" '
            f'stroke="#000" stroke-dasharray="4 3"/>'
        )
        parts.append(
            f'<text x="{mx + 4:.1f}" y="{top - 12}" fill="#000">{escape(marker[1])}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _nice_ceiling(value: float) -> float:
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        ticks = []
        decade = lo
        while decade <= hi * 1.0001:
            ticks += [decade * m for m in (1, 2, 5) if decade * m <= hi * 1.0001]
            decade *= 10
        return ticks
    step = _nice_ceiling(hi / 5)
    return [step * i for i in range(int(hi / step + 1.0001))]


def _format(value: float, digits: int) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if value < 1 else f"{value:.{digits}f}".rstrip("0").rstrip(".")


def _environment(data: dict[str, Any]) -> str:
    env = data.get("environment") or {}
    parts = [
        f"{env.get('implementation', 'Python')} {env.get('python', '?')}",
        f"{env.get('cpu_count', '?')} CPUs",
    ]
    if env.get("when"):
        parts.append(f"measured {env['when']}")
    return ", ".join(parts)


# -- one function per results file -----------------------------------------------------


def core_charts(data: dict[str, Any]) -> list[Chart]:
    columns: dict[str, str] = data["columns"]
    groups: list[Group] = []
    for scenario in data["send"]:
        results = scenario["results"]
        bars = [(columns[key], results[key]["factor"]) for key in columns if key in results]
        groups.append((scenario["label"], bars))
    send = Chart(
        "core-send.svg",
        "Send overhead against a hand-written loop",
        "Time of one send divided by the time of a plain Python loop making the same calls "
        "in that library's calling convention (1.0 = as fast as the loop; lower is better). "
        f"{_environment(data)}.",
        bar_chart(
            "Send overhead (send time / hand-written loop)",
            groups,
            "factor",
            log=True,
            marker=(1.0, "hand-written loop"),
        ),
    )
    charts = [send]
    cycles = data.get("connect_disconnect") or {}
    groups = []
    for variant in cycles.values():
        for library, result in variant["results"].items():
            sizes = result["sizes"]
            bars = [(f"N = {size}", entry["per_op_us"]) for size, entry in sizes.items()]
            groups.append((f"{library} ({variant['label']})", bars))
    if groups:
        charts.append(
            Chart(
                "core-connect.svg",
                "Connect and disconnect",
                "Microseconds per operation when N receivers are connected, then all "
                "disconnected in a shuffled order (lower is better; equal bars for both N "
                "mean O(1) operations). A capped cycle (django at large N) shows a lower "
                f"bound. {_environment(data)}.",
                bar_chart(
                    "Connect + disconnect (microseconds per operation)",
                    groups,
                    "µs per operation",
                    log=True,
                ),
            )
        )
    return charts


def startup_charts(data: dict[str, Any]) -> list[Chart]:
    contenders: dict[str, Any] = data["contenders"]
    groups: list[Group] = [
        (name, [("median", entry["median_ms"]), ("best", entry["min_ms"])])
        for name, entry in contenders.items()
    ]
    return [
        Chart(
            "startup.svg",
            f"Startup with {data.get('plugins', '?')} installed plugins",
            "Wall-clock milliseconds of a fresh interpreter that discovers, imports and calls "
            "every plugin; '(diag.)' rows are diagnostics, not contenders (lower is better). "
            f"Goal: {data.get('goal', '?')}. {_environment(data)}.",
            bar_chart("Startup (milliseconds)", groups, "ms"),
        )
    ]


def sqlalchemy_charts(data: dict[str, Any]) -> list[Chart]:
    groups: list[Group] = [
        (operation, list(result["best_us_per_row"].items()))
        for operation, result in data["results"].items()
    ]
    return [
        Chart(
            "sqlalchemy.svg",
            "SQLAlchemy flushes, wired and unwired",
            f"Microseconds per row of a flush of {data.get('rows', '?')} rows: models not "
            "wired, wired with no receiver, and wired with receivers (lower is better). "
            f"{_environment(data)}.",
            bar_chart("SQLAlchemy flush (µs per row)", groups, "µs per row"),
        )
    ]


def bridges_charts(data: dict[str, Any]) -> list[Chart]:
    groups: list[Group] = []
    for framework in ("django", "flask"):
        for case, timings in (data.get(framework) or {}).items():
            if isinstance(timings, dict):
                bars = [(name, seconds * 1e6) for name, seconds in timings.items()]
                groups.append((f"{framework}: {case.replace('_', ' ')}", bars))
    return [
        Chart(
            "bridges.svg",
            "Framework bridges",
            "Microseconds per request (or per model instantiation) with and without the "
            f"tocsin bridge installed and no tocsin receiver (lower is better). "
            f"{_environment(data)}.",
            bar_chart("Framework bridges (µs)", groups, "µs"),
        )
    ]


def celery_charts(data: dict[str, Any]) -> list[Chart]:
    throughput: list[Group] = [
        (
            "enqueue",
            [(name, entry["per_second"]) for name, entry in data["enqueue_per_second"].items()],
        )
    ]
    latency: list[Group] = []
    for workers, cases in data["latency"].items():
        for case, entry in cases.items():
            latency.append(
                (f"{case}, {workers}", [("p50", entry["p50_ms"]), ("p99", entry["p99_ms"])])
            )
    return [
        Chart(
            "celery-enqueue.svg",
            "Celery: enqueueing",
            "Sends per second of a deferred receiver against a plain task.delay() "
            f"(higher is better). {_environment(data)}.",
            bar_chart("Celery enqueue (per second)", throughput, "per second"),
        ),
        Chart(
            "celery-latency.svg",
            "Celery: send to delivery",
            "Milliseconds from send to the receiver running in a worker, idle and under a "
            f"burst (lower is better). {_environment(data)}.",
            bar_chart("Celery latency (ms)", latency, "ms", log=True),
        ),
    ]


def outbox_charts(data: dict[str, Any]) -> list[Chart]:
    results = data["results"]
    commit: list[Group] = [
        (kind, [(name, entry["best_us"]) for name, entry in found["commit"].items()])
        for kind, found in results.items()
    ]
    drain: list[Group] = [
        (kind, [(name, entry["best_per_second"]) for name, entry in found["drain"].items()])
        for kind, found in results.items()
    ]
    return [
        Chart(
            "outbox-commit.svg",
            "Celery outbox: commit and enqueue",
            "Microseconds per unit of work (a new session INSERTs a row, commits, and a "
            "message is enqueued): through the outbox, on_commit without it, and commit + "
            f"delay() (lower is better). {_environment(data)}.",
            bar_chart("Outbox commit + enqueue (µs)", commit, "µs"),
        ),
        Chart(
            "outbox-drain.svg",
            "Celery outbox: relay drain rate",
            "Messages per second the relay publishes from pending outbox rows, against "
            f"delay() of as many messages (higher is better). {_environment(data)}.",
            bar_chart("Outbox relay drain (per second)", drain, "per second"),
        ),
    ]


#: results file stem -> the function that charts it, in page order.
CHARTERS: dict[str, Callable[[dict[str, Any]], list[Chart]]] = {
    "core": core_charts,
    "startup": startup_charts,
    "sqlalchemy": sqlalchemy_charts,
    "bridges": bridges_charts,
    "celery": celery_charts,
    "outbox": outbox_charts,
}


def build(results_dir: Path) -> tuple[list[Chart], list[str]]:
    """Every chart the results allow, and a note for each results file left out."""
    charts: list[Chart] = []
    notes: list[str] = []
    for stem, charter in CHARTERS.items():
        path = results_dir / f"{stem}.json"
        if not path.is_file():
            notes.append(f"{stem}: no results yet (bench/results/{stem}.json)")
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            charts += charter(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            notes.append(
                f"{stem}: {path.name} could not be charted ({type(error).__name__}: {error})"
            )
    return charts, notes


def write(charts: list[Chart], notes: list[str], out_dir: Path) -> list[Path]:
    """Write the charts and the index into *out_dir*; remove charts no longer made.
    Returns the files whose content changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    wanted = {chart.file for chart in charts}
    for old in out_dir.glob("*.svg"):
        if old.name not in wanted:
            old.unlink()
            changed.append(old)
    index = {
        "charts": [{"file": c.file, "title": c.title, "caption": c.caption} for c in charts],
        "notes": notes,
    }
    outputs = {chart.file: chart.svg for chart in charts}
    outputs[INDEX] = json.dumps(index, indent=2, ensure_ascii=False) + "\n"
    for name, text in outputs.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    charts, notes = build(args.results)
    changed = write(charts, notes, args.out)
    for chart in charts:
        print(f"chart: {args.out / chart.file}")
    for note in notes:
        print(f"skipped: {note}", file=sys.stderr)
    print(f"{len(changed)} files changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
