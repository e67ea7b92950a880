"""MkDocs hook: chart the benchmark results at every build, and show them on the page.

Before the build, ``bench/chart.py`` turns ``bench/results/*.json`` (written by
``make bench``) into SVG charts in ``docs/benchmarks/``.  The benchmarks page holds a
placeholder, replaced by the charts that exist, or by a note saying how to make them:
the site builds the same with or without results.  ``TOCSIN_BENCH_RESULTS`` names
another results directory.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAGE = "benchmarks/index.md"
PLACEHOLDER = "<!-- benchmark charts -->"

_state: dict[str, Any] = {"charts": [], "notes": []}


def _chart_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tocsin_bench_chart", ROOT / "bench" / "chart.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {ROOT / 'bench' / 'chart.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def on_pre_build(config: Any, **kwargs: Any) -> None:
    chart = _chart_module()
    results = Path(os.environ.get("TOCSIN_BENCH_RESULTS") or chart.RESULTS_DIR)
    charts, notes = chart.build(results)
    chart.write(charts, notes, Path(config["docs_dir"]) / "benchmarks")
    _state["charts"], _state["notes"] = charts, notes


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    charts, notes = _state["charts"], _state["notes"]
    parts: list[str] = []
    if not charts:
        parts.append(
            '!!! note "No benchmark results yet"\n\n'
            "    This build found no results in `bench/results/`. Run `make bench` (a few "
            "minutes), then `make docs` again, and the charts appear here.\n"
        )
    for chart in charts:
        parts.append(f"## {chart.title}\n\n![{chart.title}]({chart.file})\n\n{chart.caption}\n")
    if charts and notes:
        parts.append("## Not charted\n\n" + "".join(f"* {note}\n" for note in notes))
    return markdown.replace(PLACEHOLDER, "\n".join(parts))
