"""Helpers shared by the benchmark modules: environment facts, tables, JSON results.

Nothing here is timed.  Every ``bench_<name>.py`` module prints its own tables and
writes ``bench/results/<name>.json`` (gitignored) through :func:`write_results`, so a
docs page can chart the numbers later.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def python_description() -> str:
    """``CPython 3.11.7 (Linux x86_64)``: what the numbers were measured on."""
    return (
        f"{platform.python_implementation()} {platform.python_version()} "
        f"({platform.system()} {platform.machine()})"
    )


def versions(*distributions: str) -> dict[str, str | None]:
    """Installed versions of *distributions* (None when one is missing)."""
    found: dict[str, str | None] = {}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def environment(*distributions: str) -> dict[str, Any]:
    """The facts a reader needs to judge a result file."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "versions": versions("tocsin", *distributions),
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], title: str = "") -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    rows = [list(row) for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    out.append(line(headers))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write *data* as ``bench/results/<name>.json`` and return the path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
