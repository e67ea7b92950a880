"""Run tocsin's benchmarks (``make bench``).

    python bench/run.py                  # every benchmark module, core first
    python bench/run.py core             # only bench/bench_core.py
    python bench/run.py core --quick     # options after the names go to each module
    python bench/run.py --list           # what there is

A benchmark is a module ``bench/bench_<name>.py`` with a ``main(argv) -> int``
function; dropping a new one in this folder is all it takes to add it.  Each prints its
tables and writes ``bench/results/<name>.json``.  These are scripts run by hand: the
test suite never times anything.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
#: Modules that run first, in this order; any other bench_*.py follows by name.
FIRST = ("core",)


def available() -> list[str]:
    names = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    return [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")]
    options = [a for a in argv if a.startswith("-")]
    known = available()
    if "--list" in options or "-h" in options or "--help" in options:
        print(__doc__.strip())
        print("\nbenchmarks:", ", ".join(known) or "none")
        return 0
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(known)}")
        return 2
    sys.path.insert(0, str(BENCH_DIR))
    status = 0
    for name in names or known:
        module = importlib.import_module(f"bench_{name}")
        print(f"=== bench {name} ({module.__file__}) ===", flush=True)
        started = time.perf_counter()
        status = module.main(options) or status
        print(f"=== bench {name}: {time.perf_counter() - started:.0f} s ===\n", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
