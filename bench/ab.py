"""Before/after: the same micro-benchmarks on two checkouts of tocsin, interleaved.

    python bench/ab.py ../before .            # each a checkout with its C send built
    python bench/ab.py ../before . --rounds 15

Each round starts one fresh process per checkout (in alternating order), with
``PYTHONPATH=<checkout>/core``, and each process times every case below; the table
gives each case's median over the rounds, per checkout, and the after/before ratio.
Interleaving whole processes spreads a shared machine's noise over both sides alike,
which is what makes a 3% difference readable at all.  Not part of ``make bench``:
it compares tocsin with itself, for a change's closing note.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

#: Timed in each child process; prints {case: seconds per operation} as JSON.
CHILD = r"""
import gc, json, random, timeit
import tocsin
from tocsin import Signal

def make(n, prefix):
    ns = {}
    exec("".join(f"def {prefix}{i}(sender, **kwargs):\n    return None\n" for i in range(n)), ns)
    return [ns[f"{prefix}{i}"] for i in range(n)]

class Sender: pass
out = {}

def best(stmt, g, number):
    return min(timeit.repeat(stmt, globals=g, number=number, repeat=7)) / number

for n in (0, 1, 10):
    sig = Signal()
    rs = make(n, f"r{n}_")
    for r in rs:
        sig.connect(r, sender=Sender)
    sig.send(Sender, a=1, b=2)
    g = {"sig": sig, "S": Sender}
    out[f"send positional, {n} receivers"] = best("sig.send(S, a=1, b=2)", g, 20000)
    out[f"send sender=, {n} receivers"] = best("sig.send(sender=S, a=1, b=2)", g, 20000)

class Target:
    pass

def cycle(n, distinct):
    rs = make(n, "c_")
    senders = [Target() for _ in range(n)] if distinct else [None] * n
    order = list(range(n))
    random.Random(1).shuffle(order)
    connect_best = disconnect_best = float("inf")
    for _ in range(5):
        sig = Signal()
        c = sig.connect
        d = sig.disconnect
        gc.disable()
        t0 = timeit.default_timer()
        for r, s in zip(rs, senders):
            c(r, sender=s)
        t1 = timeit.default_timer()
        for i in order:
            d(rs[i], sender=senders[i])
        t2 = timeit.default_timer()
        gc.enable()
        connect_best = min(connect_best, (t1 - t0) / n)
        disconnect_best = min(disconnect_best, (t2 - t1) / n)
    return connect_best, disconnect_best

for distinct in (False, True):
    label = "distinct senders" if distinct else "sender=None"
    c, d = cycle(5000, distinct)
    out[f"connect, 5k, {label}"] = c
    out[f"disconnect, 5k, {label}"] = d

print(json.dumps(out))
"""


def run(checkout: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(checkout / "core"))
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    samples: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for round_ in range(args.rounds):
        sides = [("before", args.before), ("after", args.after)]
        if round_ % 2:
            sides.reverse()
        for side, checkout in sides:
            for case, seconds in run(checkout).items():
                samples[side].setdefault(case, []).append(seconds)
    print(f"{'case':42} {'before':>10} {'after':>10} {'after/before':>13}")
    for case, before in samples["before"].items():
        b = statistics.median(before)
        a = statistics.median(samples["after"][case])
        print(f"{case:42} {b * 1e9:8.0f}ns {a * 1e9:8.0f}ns {a / b:13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
