"""Startup: a whole process that imports, discovers and loads 300 installed plugins,
then sends once to all of them.

    python bench/bench_startup.py                  # 20 interleaved runs per contender
    python bench/bench_startup.py --runs=30        # more runs
    python bench/bench_startup.py --quick          # 5 runs, to check it works
    python bench/bench_startup.py --profile        # also: where tocsin's process spends it
    python bench/bench_startup.py --keep           # keep the temporary directory

The goal (issue "Startup speed"): ``import tocsin; tocsin.plugins.load(); <one send
reaching all 300>`` in at most half the time stevedore's ``ExtensionManager`` takes to
load the same 300 plugins.

Setup, once, in a temporary directory:

* a fresh virtual environment (no pip) holding only what the contenders need: tocsin
  (copied from this checkout, installed normally, not editable), pluggy and stevedore.
  The development venv is not used, because it holds the example ``tocsin.plugins``
  plugins and dozens of unrelated distributions.
* one site directory per kind of plugin module, each with the same 300 hand-written
  distributions (``bench_pluginNNN-1.0.dist-info`` with METADATA and an
  ``entry_points.txt`` declaring ``[tocsin.plugins] pluginNNN = pluginNNN``) and a
  package ``pluginNNN`` each.  Only the module bodies differ, by what each framework
  needs for "one receiver": tocsin's connect one ``handle`` with ``@receiver`` to a
  Signal in a shared ``bench_signal`` module; pluggy's mark ``handle`` with a
  ``@hookimpl`` from a shared ``bench_hooks`` module; stevedore's and the bare scan's
  just define ``handle``.  Separate module sets, rather than one set with a switch,
  keep each contender from importing (and paying for) another contender's library.
* everything byte-compiled, and file times set a minute back so tocsin's index is not
  refused as "racy" (files younger than 2 s are not trusted).

Each contender then runs as its own process, ``python -s -P -c <code>`` in an empty
working directory, with a minimal environment: ``PYTHONPATH`` naming its site
directory, ``TOCSIN_CACHE_DIR`` and ``XDG_CACHE_HOME`` (stevedore's entry-point cache)
inside the temporary directory, and no ``PYTHONDONTWRITEBYTECODE`` (set on some
machines, it would make every run recompile).  Each is run once to warm up (which
writes tocsin's index and stevedore's cache), then all are timed round-robin, wall
clock around ``subprocess.run``.  Every process checks that its send reached all 300
receivers and exits non-zero otherwise, so nothing can be silently skipped.

Rows marked "diag." are not contenders but yardsticks: importing the 300 modules by
name with no discovery at all (plain, after ``import pluggy``, and with tocsin's
``@receiver``), and importing tocsin's plugin machinery alone.  "pluggy + 300 plain" is
the least a manager that registers its plugins with pluggy can take, before it reads
a single entry point: the goal cannot be met below it.  ``--profile`` adds where
tocsin's process spends its time: phases timed in-process, ``-X importtime``, and a
cProfile.
"""

from __future__ import annotations

import compileall
import importlib.metadata
import importlib.util
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import environment, python_description, table, write_results

N_PLUGINS = 300
GROUP = "tocsin.plugins"
GOAL = 0.5  # tocsin / stevedore, whole process
DEFAULT_RUNS = 20
QUICK_RUNS = 5
#: How far back file times are set, so nothing is younger than tocsin's RACY_SECONDS.
BACKDATE_SECONDS = 60

# -- what each plugin module contains, per kind -------------------------------------

PLUGIN_MODULES = {
    "tocsin": """\
        from bench_signal import SIGNAL
        from tocsin import receiver


        @receiver(SIGNAL)
        def handle(sender, **kwargs):
            return 1
        """,
    "pluggy": """\
        from bench_hooks import hookimpl


        @hookimpl
        def handle(sender):
            return 1
        """,
    "plain": """\
        def handle(sender, **kwargs):
            return 1
        """,
}

SHARED_MODULES = {
    "tocsin": {
        "bench_signal.py": """\
            from tocsin import Signal

            SIGNAL = Signal(name="bench.startup")
            """,
    },
    "pluggy": {
        "bench_hooks.py": """\
            import pluggy

            hookspec = pluggy.HookspecMarker("bench")
            hookimpl = pluggy.HookimplMarker("bench")


            @hookspec
            def handle(sender):
                \"\"\"Called once per send, on every plugin.\"\"\"
            """,
    },
    "plain": {},
}

# -- what each contender's process runs ----------------------------------------------

CHECK = f"""
if reached != {N_PLUGINS}:
    raise SystemExit(f"the send reached {{reached}} receivers, not {N_PLUGINS}")
"""

TOCSIN_CODE = (
    """
import tocsin
tocsin.plugins.load()
from bench_signal import SIGNAL
reached = sum(response for _, response in SIGNAL.send(None))
if tocsin.plugins.last_discovery.from_cache != (FROM_CACHE):
    raise SystemExit("expected from_cache=FROM_CACHE")
"""
    + CHECK
)


FLOOR_CODE = (
    f"""
import importlib
reached = sum(importlib.import_module(f"plugin{{n:03d}}").handle(None) for n in range({N_PLUGINS}))
"""
    + CHECK
)


# What the issue's own requirements cost before tocsin does anything: the interpreter,
# pluggy (which plugins must be registered with), and importing the 300 modules.
FLOOR_PLUGGY_CODE = "import pluggy\n" + FLOOR_CODE


FLOOR_TOCSIN_CODE = (
    f"""
import importlib
import tocsin
from bench_signal import SIGNAL
for n in range({N_PLUGINS}):
    importlib.import_module(f"plugin{{n:03d}}")
reached = sum(response for _, response in SIGNAL.send(None))
"""
    + CHECK
)


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    code: str
    site: str | None  # which kind of site directory goes on PYTHONPATH
    env: tuple[tuple[str, str], ...] = ()
    diagnostic: bool = False  # shown, but not part of the comparison


CONTENDERS = (
    Contender("python start", "python -c pass", "pass", None),
    Contender(
        "tocsin (index warm)",
        "import tocsin; tocsin.plugins.load(); SIGNAL.send()",
        TOCSIN_CODE.replace("FROM_CACHE", "True"),
        "tocsin",
    ),
    Contender(
        "tocsin (TOCSIN_NO_CACHE=1)",
        "the same, scanning importlib.metadata",
        TOCSIN_CODE.replace("FROM_CACHE", "False"),
        "tocsin",
        (("TOCSIN_NO_CACHE", "1"),),
    ),
    Contender(
        "stevedore",
        "ExtensionManager(invoke_on_load=False); call each plugin's handle",
        """
from stevedore import ExtensionManager
manager = ExtensionManager("tocsin.plugins", invoke_on_load=False)
reached = sum(extension.plugin.handle(None) for extension in manager)
"""
        + CHECK,
        "plain",
    ),
    Contender(
        "pluggy",
        "load_setuptools_entrypoints(); call the hook",
        """
import pluggy
import bench_hooks
manager = pluggy.PluginManager("bench")
manager.add_hookspecs(bench_hooks)
manager.load_setuptools_entrypoints("tocsin.plugins")
reached = sum(manager.hook.handle(sender=None))
"""
        + CHECK,
        "pluggy",
    ),
    Contender(
        "bare importlib.metadata",
        "entry_points(group=...); ep.load() each; call handle",
        """
from importlib.metadata import entry_points
reached = sum(ep.load().handle(None) for ep in entry_points(group="tocsin.plugins"))
"""
        + CHECK,
        "plain",
    ),
    Contender(
        "floor: import 300 plain (diag.)",
        "no discovery, no framework: import_module each pluginNNN by name, call handle",
        FLOOR_CODE,
        "plain",
        diagnostic=True,
    ),
    Contender(
        "floor: pluggy + 300 plain (diag.)",
        "import pluggy, then import_module each pluginNNN by name: the least any "
        "pluggy-backed manager pays",
        FLOOR_PLUGGY_CODE,
        "plain",
        diagnostic=True,
    ),
    Contender(
        "floor: tocsin + 300 (diag.)",
        "import tocsin, import_module each @receiver pluginNNN by name (no manager), send",
        FLOOR_TOCSIN_CODE,
        "tocsin",
        diagnostic=True,
    ),
    Contender(
        "import tocsin._manager (diag.)",
        "import tocsin and its plugin machinery (pluggy, discovery, settings), no plugins",
        "import tocsin, tocsin._manager",
        "tocsin",
        diagnostic=True,
    ),
)


# -- setup ---------------------------------------------------------------------------


@dataclass
class Workspace:
    root: Path
    python: Path
    site_packages: Path
    sites: dict[str, Path]
    workdir: Path
    tocsin_cache: Path
    xdg_cache: Path

    def env_for(self, contender: Contender) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root / "home"),
            "TOCSIN_CACHE_DIR": str(self.tocsin_cache),
            "XDG_CACHE_HOME": str(self.xdg_cache),
        }
        for name in ("LANG", "LC_ALL", "SYSTEMROOT"):
            if name in os.environ:
                env[name] = os.environ[name]
        if contender.site is not None:
            env["PYTHONPATH"] = str(self.sites[contender.site])
        env.update(contender.env)
        return env

    def command(self, contender: Contender, *extra: str) -> list[str]:
        # -s: no user site; -P (3.11+): no working directory on sys.path.  Not -I, which
        # would also ignore PYTHONPATH; the environment is minimal instead.
        isolation = ["-s", "-P"] if sys.version_info >= (3, 11) else ["-s"]
        return [str(self.python), *isolation, *extra, "-c", contender.code]


def build_workspace(root: Path) -> Workspace:
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt", clear=True).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for distribution in ("tocsin", "pluggy", "stevedore"):
        install_copy(distribution, site_packages)

    sites = {kind: root / f"site-{kind}" for kind in PLUGIN_MODULES}
    for kind, site in sites.items():
        write_site(site, kind)

    workdir = root / "work"
    for folder in (workdir, root / "home", root / "tocsin-cache", root / "xdg-cache"):
        folder.mkdir()
    # Older than RACY_SECONDS, so the first run may write tocsin's index; before
    # compiling, since a .pyc records its source's mtime.
    backdate(root)
    for folder in (site_packages, *sites.values()):
        compileall.compile_dir(folder, quiet=1, workers=0)
    return Workspace(
        root, python, site_packages, sites, workdir, root / "tocsin-cache", root / "xdg-cache"
    )


def install_copy(name: str, site_packages: Path) -> None:
    """Copy an installed distribution's top-level packages and metadata, as pip would
    have laid them out (an editable install becomes a normal one)."""
    dist = importlib.metadata.distribution(name)
    top_level = (dist.read_text("top_level.txt") or name).split()
    for package in top_level:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"cannot find the package {package!r} of {name}")
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(
            source,
            site_packages / package,
            ignore=shutil.ignore_patterns("__pycache__", "tests", "*.pyc"),
        )
    meta = site_packages / f"{name}-{dist.version}.dist-info"
    meta.mkdir()
    for file in ("METADATA", "entry_points.txt", "top_level.txt", "WHEEL"):
        text = dist.read_text(file)
        if text is not None:
            (meta / file).write_text(text, encoding="utf-8")


def write_site(site: Path, kind: str) -> None:
    site.mkdir()
    body = textwrap.dedent(PLUGIN_MODULES[kind])
    for filename, text in SHARED_MODULES[kind].items():
        (site / filename).write_text(textwrap.dedent(text), encoding="utf-8")
    for number in range(N_PLUGINS):
        name = f"plugin{number:03d}"
        meta = site / f"bench_{name}-1.0.dist-info"
        meta.mkdir()
        (meta / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: bench-{name}\nVersion: 1.0\n", encoding="utf-8"
        )
        (meta / "entry_points.txt").write_text(f"[{GROUP}]\n{name} = {name}\n", encoding="utf-8")
        package = site / name
        package.mkdir()
        (package / "__init__.py").write_text(f'"""Bench plugin {name}."""\n\n{body}')


def backdate(root: Path) -> None:
    stamp = time.time() - BACKDATE_SECONDS
    for folder, dirs, files in os.walk(root):
        for item in (*dirs, *files):
            path = os.path.join(folder, item)
            if not os.path.islink(path):
                os.utime(path, (stamp, stamp))
        os.utime(folder, (stamp, stamp))


# -- running ---------------------------------------------------------------------------


def run_once(space: Workspace, contender: Contender, *extra: str) -> tuple[float, str]:
    """Run one process; return its wall-clock seconds and its stderr."""
    command = space.command(contender, *extra)
    env = space.env_for(contender)
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=space.workdir, env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"{contender.name} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return elapsed, done.stderr


def warm_up(space: Workspace) -> None:
    """Run every contender once; the first tocsin run scans and writes the index."""
    first = Contender(
        "tocsin (first run, writes the index)",
        "",
        TOCSIN_CODE.replace("FROM_CACHE", "False"),
        "tocsin",
    )
    for contender in (first, *CONTENDERS):
        _, stderr = run_once(space, contender)
        if stderr.strip():  # a warning would mean something is not what it seems
            raise RuntimeError(f"{contender.name} wrote to stderr:\n{stderr}")
    if not list(space.tocsin_cache.glob("entry-points-*.idx")):
        raise RuntimeError(f"tocsin wrote no index in {space.tocsin_cache}")


def measure(space: Workspace, runs: int) -> dict[str, list[float]]:
    """Round-robin: every round runs each contender once, starting one further along."""
    times: dict[str, list[float]] = {c.name: [] for c in CONTENDERS}
    count = len(CONTENDERS)
    for round_ in range(runs):
        for offset in range(count):
            contender = CONTENDERS[(round_ + offset) % count]
            elapsed, _ = run_once(space, contender)
            times[contender.name].append(elapsed)
    return times


# -- profiling (--profile) -----------------------------------------------------------

PHASES_CODE = """
import time
t0 = time.perf_counter()
import importlib, json, sys
spent = {"discover": 0.0, "plugin imports": 0.0, "pluggy register": 0.0}
def timed(key, function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - started
    return wrapper
t1 = time.perf_counter()
import tocsin
t2 = time.perf_counter()
import tocsin._manager
t3 = time.perf_counter()
tocsin._manager.discover = timed("discover", tocsin._manager.discover)
importlib.import_module = timed("plugin imports", importlib.import_module)
manager = tocsin.plugins
manager._pm.register = timed("pluggy register", manager._pm.register)
t4 = time.perf_counter()
manager.load()
t5 = time.perf_counter()
from bench_signal import SIGNAL
reached = sum(response for _, response in SIGNAL.send(None))
t6 = time.perf_counter()
assert reached == 300 and manager.last_discovery.from_cache, reached
rest = (t5 - t4) - sum(spent.values())
phases = {
    "import tocsin (Signal, receiver)": t2 - t1,
    "import tocsin._manager (+ pluggy, discovery, settings)": t3 - t2,
    "load(): discover (index)": spent["discover"],
    "load(): import the 300 plugin modules": spent["plugin imports"],
    "load(): pluggy register x300": spent["pluggy register"],
    "load(): the rest (settings, bookkeeping, connect, hooks)": rest,
    "send to 300": t6 - t5,
}
print(json.dumps(phases))
"""

PROFILE_CODE = """
import cProfile, pstats, sys
profile = cProfile.Profile()
profile.enable()
import tocsin
tocsin.plugins.load()
from bench_signal import SIGNAL
reached = sum(response for _, response in SIGNAL.send(None))
profile.disable()
assert reached == 300, reached
pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(15)
"""


def capture(
    space: Workspace, code: str, site: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    contender = Contender("profile", "", code, site)
    return subprocess.run(
        space.command(contender, *extra),
        cwd=space.workdir,
        env=space.env_for(contender),
        capture_output=True,
        text=True,
        check=True,
    )


def profile_tocsin(space: Workspace, runs: int = 7) -> tuple[str, dict[str, float]]:
    """Where the tocsin process spends its time: phases (median of *runs* processes),
    the heaviest top-level imports, and a cProfile of import + load + send."""
    out = io.StringIO()
    samples = [json.loads(capture(space, PHASES_CODE, "tocsin").stdout) for _ in range(runs)]
    phases = {key: statistics.median(s[key] for s in samples) * 1000 for key in samples[0]}
    print(f"tocsin process, phases in ms (median of {runs} processes, index warm):", file=out)
    for key, value in phases.items():
        print(f"  {value:7.2f}  {key}", file=out)

    importtime = capture(
        space, TOCSIN_CODE.replace("FROM_CACHE", "True"), "tocsin", "-X", "importtime"
    ).stderr
    rows = []
    for line in importtime.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            own, cumulative, module = line.removeprefix("import time:").split("|", 2)
            rows.append((int(cumulative), int(own), module[1:]))
    print(
        "\n-X importtime, heaviest imports (cumulative ms, self ms, module; indented = "
        "nested; plugin modules are not listed, import_module bypasses it):",
        file=out,
    )
    for cumulative, own, module in sorted(rows, reverse=True)[:20]:
        print(f"  {cumulative / 1000:7.2f}  {own / 1000:6.2f}  {module}", file=out)

    print("\ncProfile of import + load + send, by own time:", file=out)
    print(capture(space, PROFILE_CODE, "tocsin").stdout.strip(), file=out)
    return out.getvalue(), phases


# -- reporting -----------------------------------------------------------------------


def summarize(times: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    summary = {}
    for name, values in times.items():
        milliseconds = [v * 1000 for v in values]
        summary[name] = {
            "min_ms": round(min(milliseconds), 3),
            "median_ms": round(statistics.median(milliseconds), 3),
            "mean_ms": round(statistics.fmean(milliseconds), 3),
            "stdev_ms": round(statistics.stdev(milliseconds), 3) if len(values) > 1 else 0.0,
            "runs_ms": [round(v, 3) for v in milliseconds],
        }
    return summary


def report(summary: dict[str, dict[str, Any]], runs: int) -> tuple[str, dict[str, float]]:
    start = summary["python start"]
    stevedore = summary["stevedore"]
    rows = []
    for contender in CONTENDERS:
        s = summary[contender.name]
        rows.append(
            [
                contender.name,
                f"{s['min_ms']:.1f}",
                f"{s['median_ms']:.1f}",
                f"{s['stdev_ms']:.1f}",
                f"{s['median_ms'] - start['median_ms']:.1f}",
                f"{s['median_ms'] / stevedore['median_ms']:.2f}",
            ]
        )
    text = table(
        ["contender", "min ms", "median ms", "stdev", "median - start", "/ stevedore"],
        rows,
        title=(
            f"Whole process, {N_PLUGINS} plugin distributions, {runs} interleaved runs each "
            f"({python_description()})"
        ),
    )
    tocsin = summary["tocsin (index warm)"]
    ratios = {
        "tocsin_over_stevedore_median": tocsin["median_ms"] / stevedore["median_ms"],
        "tocsin_over_stevedore_min": tocsin["min_ms"] / stevedore["min_ms"],
        "tocsin_no_cache_over_stevedore_median": summary["tocsin (TOCSIN_NO_CACHE=1)"]["median_ms"]
        / stevedore["median_ms"],
    }
    by_median = ratios["tocsin_over_stevedore_median"]
    by_min = ratios["tocsin_over_stevedore_min"]
    # On a busy machine the medians wander with the load; the minimums hardly move.
    verdict = "met" if max(by_median, by_min) <= GOAL else "MISSED"
    floor = summary["floor: pluggy + 300 plain (diag.)"]["median_ms"] / stevedore["median_ms"]
    ratios["floor_pluggy_over_stevedore_median"] = floor
    text += (
        f"\n\ntocsin / stevedore: {by_median:.2f} by median, {by_min:.2f} by min "
        f"(goal <= {GOAL} by both: {verdict})"
        f"\nfloor (python + import pluggy + the 300 imports) / stevedore: {floor:.2f} by "
        f"median: what is left of the goal's budget for everything else is "
        f"{max(GOAL - floor, 0.0):.2f}"
    )
    return text, ratios


def parse(argv: list[str]) -> tuple[int, bool, bool]:
    runs = DEFAULT_RUNS
    keep = profile = False
    for arg in argv:
        if arg == "--quick":
            runs = QUICK_RUNS
        elif arg.startswith("--runs="):
            runs = int(arg.partition("=")[2])
        elif arg == "--keep":
            keep = True
        elif arg == "--profile":
            profile = True
        else:
            raise SystemExit(f"bench_startup: unknown option {arg!r}")
    if runs < 2:
        raise SystemExit("bench_startup: --runs must be at least 2")
    return runs, keep, profile


def main(argv: list[str] | None = None) -> int:
    runs, keep, profile = parse(sys.argv[1:] if argv is None else argv)
    root = Path(tempfile.mkdtemp(prefix="tocsin-bench-startup-"))
    try:
        print(f"Setting up {N_PLUGINS} plugin distributions x 3 module kinds in {root} ...")
        started = time.perf_counter()
        space = build_workspace(root)
        warm_up(space)
        print(f"  ready in {time.perf_counter() - started:.1f} s (venv, sites, compiled, warm)")
        print(
            "  Module sets: one per kind (tocsin @receiver / pluggy @hookimpl / plain "
            "function),\n  identical distributions and entry points, so no contender "
            "imports another's library."
        )
        times = measure(space, runs)
        summary = summarize(times)
        text, ratios = report(summary, runs)
        print()
        print(text)
        phases: dict[str, float] = {}
        if profile:
            profile_text, phases = profile_tocsin(space)
            print()
            print(profile_text)
        path = write_results(
            "startup",
            {
                "benchmark": "startup",
                "environment": environment("pluggy", "stevedore"),
                "plugins": N_PLUGINS,
                "runs": runs,
                "goal": f"tocsin / stevedore <= {GOAL}",
                "goal_met": max(
                    ratios["tocsin_over_stevedore_median"], ratios["tocsin_over_stevedore_min"]
                )
                <= GOAL,
                "ratios": {k: round(v, 4) for k, v in ratios.items()},
                "tocsin_phases_ms": {k: round(v, 3) for k, v in phases.items()},
                "contenders": {
                    c.name: {
                        "description": c.description,
                        "diagnostic": c.diagnostic,
                        **summary[c.name],
                    }
                    for c in CONTENDERS
                },
            },
        )
        print(f"\nwrote {path}")
    finally:
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
