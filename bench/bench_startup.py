"""Start-up: whole processes that import tocsin, load 300 installed plugin distributions
and send once, against stevedore's ``ExtensionManager`` *with its entry-point cache on*.

    python bench/bench_startup.py                  # 20 interleaved rounds
    python bench/bench_startup.py --runs=30        # more rounds
    python bench/bench_startup.py --quick          # 5 rounds, to check it works
    python bench/bench_startup.py --profile        # also: where tocsin's processes spend it
    python bench/bench_startup.py --keep           # keep the work folder afterwards
    python bench/bench_startup.py --dir=PATH       # build it there (never under /tmp;
                                                   # or set TOCSIN_BENCH_DIR)

The goals (issue 13, "Start-up goals"), each a ratio of medians to cached stevedore
loading the same 300 plugins, or a difference to ``python -c pass``:

* declared receivers (``tocsin.plugins.receivers`` entry points), ``import tocsin;
  tocsin.plugins.load(); <send a signal that one plugin listens to>``: <= 0.25x;
* declared receivers, the send reaching all 300: <= 0.6x;
* eager plugins (``tocsin.plugins`` module entry points, imported by ``load()``), the
  send reaching all 300: <= 0.75x;
* ``python -c "import tocsin"`` within 8 ms of ``python -c pass``.

**stevedore's cache.**  stevedore keeps the entry points it scanned in
``$XDG_CACHE_HOME/python-entrypoints/<digest>`` and reads them back on the next start,
unless its cache folder holds a ``.disable`` file or ``sys.executable`` starts with
``/tmp`` (``stevedore._cache.Cache.__init__``).  An earlier version of this benchmark
built its environment under ``tempfile.mkdtemp()`` and so compared against stevedore
*without* its cache.  Everything is now built outside ``/tmp`` (``bench/.work/startup``
by default, ignored by git), the benchmark refuses a work folder under ``/tmp``, and it
shows that the cache is on three ways: the condition stevedore checks, the cache file
the warm-up run wrote, and a run in which rebuilding the cache is made to fail (so the
timed runs can only have read it).  The "stevedore, cache off" row shows what the cache
is worth (the same runs with a ``.disable`` file in another cache folder).

Setup, once per run, in the work folder:

* a fresh virtual environment (no pip) holding only what the contenders need: tocsin
  (copied from this checkout, installed normally, not editable, with its C send if it
  was built), pluggy and stevedore;
* one site directory per kind of plugin module, each with the same 300 hand-written
  distributions (``bench_pluginNNN-1.0.dist-info`` with METADATA and
  ``entry_points.txt``) and a package ``pluginNNN`` each.  What differs is what each
  framework needs for "one receiver":

  - ``declared``: ``[tocsin.plugins.receivers] "pluginNNN bench_signal:SIGNAL" =
    pluginNNN:handle`` and a module that is a plain function (tocsin imports it on
    the first send that reaches it); plugin150 also declares ``handle_one`` for the
    signal ``bench_signal:ONE``, which no other plugin listens to;
  - ``tocsin`` (eager): ``[tocsin.plugins] pluginNNN = pluginNNN``, a module that
    connects ``handle`` with ``@receiver``;
  - ``pluggy``: a ``@hookimpl`` from a shared ``bench_hooks`` module;
  - ``plain`` (stevedore, the bare scan, the floors): ``[tocsin.plugins] pluginNNN =
    pluginNNN`` and just ``handle``.

  Separate module sets keep each contender from importing (and paying for) another
  contender's library;
* everything byte-compiled, file times set a minute back, then a pause longer than
  tocsin's ``RACY_SECONDS``: the index never trusts files changed in the last two
  seconds, and setting a file's times sets its ctime to now.

Each contender then runs as its own process, ``python -s -P -c <code>`` in a working
directory holding only the application's ``pyproject.toml`` (with no ``[tool.tocsin]``
table, so that tocsin does not find this repository's), with a minimal environment:
``PYTHONPATH`` naming its site directory, ``TOCSIN_CACHE_DIR`` and ``XDG_CACHE_HOME``
(stevedore's cache) inside the work folder, and no ``PYTHONDONTWRITEBYTECODE`` (set on
some machines, it would make every run recompile).  Each is run once to warm up (which
writes tocsin's index and stevedore's cache), then all are timed round-robin (each
round starts one further along; the two cheap ``import tocsin`` / ``pass`` processes
run three times a round).  Each run records its wall-clock time around
``subprocess.run`` and its CPU time (user + system, from ``getrusage`` of the child):
on a shared machine a process also waits for a core, which stretches wall-clock times
(most of all the shortest: ``python -c pass`` and ``import tocsin``) and hardly moves
CPU times.  The goals are judged by wall-clock medians, and shown by CPU-time medians
too (what a quiet machine's wall clock would show).  Every process checks
that its send reached exactly the receivers it should, that tocsin imported exactly
the plugins it should, and that tocsin's index was used, and exits non-zero otherwise,
so nothing can be silently skipped.

Rows marked "diag." are yardsticks, not contenders: importing the 300 modules by name
with no discovery at all (plain, and after ``import pluggy``), tocsin without its
index, tocsin's plugin machinery alone, stevedore without its cache, and two floors.
The issue keeps pluggy underneath (a plugin is registered with pluggy when its code is
imported), so a process that imports even one plugin imports pluggy: "floor: tocsin +
pluggy" (``import pluggy, tocsin``) is the least the "send to 1" process can take, and
"floor: tocsin + pluggy + 300" (the same, then the 300 ``@receiver`` modules imported by
name and one send) the least the "send to 300" ones can.  The goals table shows each
goal's floor next to it.
"""

from __future__ import annotations

import compileall
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from _common import BENCH_DIR, environment, python_description, table, write_results

N_PLUGINS = 300
GROUP = "tocsin.plugins"
RECEIVERS_GROUP = f"{GROUP}.receivers"
#: The plugin that alone listens to ``bench_signal:ONE``.
ONE_PLUGIN = 150
DEFAULT_RUNS = 20
QUICK_RUNS = 5
#: How many times a round runs the cheap processes (python start, import tocsin), whose
#: difference is a goal of a few milliseconds.
CHEAP_REPEAT = 3
#: How far back file times are set.
BACKDATE_SECONDS = 60
#: tocsin's index is not written while a fingerprinted file changed in the last
#: RACY_SECONDS (tocsin._discovery); the setup waits this long, and a little more.
try:
    from tocsin._discovery import RACY_SECONDS
except ImportError:  # an older tocsin in the running environment
    RACY_SECONDS = 2
DEFAULT_WORK_DIR = BENCH_DIR / ".work" / "startup"
#: stevedore turns its cache off for an interpreter whose path starts with this.
STEVEDORE_NO_CACHE_PREFIX = "/tmp"

# -- what each plugin module contains, per kind -------------------------------------

PLUGIN_MODULES = {
    "declared": """\
        def handle(sender, **kwargs):
            return 1
        """,
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

#: Added to plugin ONE_PLUGIN's module in the declared site.
ONE_RECEIVER = """

def handle_one(sender, **kwargs):
    return 1
"""

TOCSIN_SIGNALS = """\
    from tocsin import Signal

    SIGNAL = Signal(name="bench.startup")
    ONE = Signal(name="bench.startup.one")
    """

SHARED_MODULES = {
    "declared": {"bench_signal.py": TOCSIN_SIGNALS},
    "tocsin": {"bench_signal.py": TOCSIN_SIGNALS},
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


def entry_points_text(kind: str, name: str) -> str:
    if kind != "declared":
        return f"[{GROUP}]\n{name} = {name}\n"
    lines = [f"[{RECEIVERS_GROUP}]", f"{name} bench_signal:SIGNAL = {name}:handle"]
    if name == f"plugin{ONE_PLUGIN:03d}":
        lines.append(f"{name} bench_signal:ONE = {name}:handle_one")
    return "\n".join(lines) + "\n"


# -- what each contender's process runs ----------------------------------------------


def check(expected: int) -> str:
    return f"""
if reached != {expected}:
    raise SystemExit(f"the send reached {{reached}} receivers, not {expected}")
"""


def tocsin_code(signal: str, reached: int, imported: int, from_cache: bool = True) -> str:
    """import tocsin, load(), send *signal*; check what it reached and imported."""
    return f"""
import sys
import tocsin
tocsin.plugins.load()
from bench_signal import {signal}
reached = sum(response for _, response in {signal}.send(None))
if tocsin.plugins.last_discovery.from_cache is not {from_cache}:
    raise SystemExit("expected tocsin.plugins.last_discovery.from_cache={from_cache}")
imported = sum(1 for name in sys.modules if name.startswith("plugin"))
if imported != {imported}:
    raise SystemExit(f"{{imported}} plugin modules were imported, not {imported}")
""" + check(reached)


FLOOR_CODE = f"""
import importlib
reached = sum(importlib.import_module(f"plugin{{n:03d}}").handle(None) for n in range({N_PLUGINS}))
""" + check(N_PLUGINS)

# What the issue's own requirements cost before tocsin does anything: the interpreter,
# pluggy (which plugins must be registered with), and importing the 300 modules.
FLOOR_PLUGGY_CODE = "import pluggy\n" + FLOOR_CODE

# With tocsin and pluggy imported, the plugins imported and registered with nothing: the
# least a manager that keeps pluggy underneath can take to import 300 plugins.
FLOOR_TOCSIN_CODE = f"""
import importlib
import pluggy
import tocsin
from bench_signal import SIGNAL
for n in range({N_PLUGINS}):
    importlib.import_module(f"plugin{{n:03d}}")
reached = sum(response for _, response in SIGNAL.send(None))
""" + check(N_PLUGINS)

STEVEDORE_CODE = f"""
from stevedore import ExtensionManager
manager = ExtensionManager("{GROUP}", invoke_on_load=False)
reached = sum(extension.plugin.handle(None) for extension in manager)
""" + check(N_PLUGINS)

#: Run once after the warm-up: stevedore may not rebuild its cache, only read it.
STEVEDORE_MUST_READ_CACHE = (
    """
import sys
from stevedore import _cache
if _cache._c._disable_caching:
    raise SystemExit(f"stevedore's cache is off (sys.executable={sys.executable})")
def rebuild():
    raise SystemExit("stevedore rebuilt its cache instead of reading it")
_cache._build_cacheable_data = rebuild
"""
    + STEVEDORE_CODE
)

#: What stevedore decides about its cache, asked of stevedore in the bench environment.
STEVEDORE_CACHE_STATE = """
import json, os, sys
from stevedore import _cache
print(json.dumps({
    "executable": sys.executable,
    "disabled": _cache._c._disable_caching,
    "dir": _cache._c._dir,
    "disable_file": os.path.isfile(os.path.join(_cache._c._dir, ".disable")),
}))
"""


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    code: str
    site: str | None  # which kind of site directory goes on PYTHONPATH
    env: tuple[tuple[str, str], ...] = ()
    diagnostic: bool = False  # shown, but not part of the comparison
    repeat: int = 1  # runs per round
    stevedore_cache: str = "on"  # "on": the shared cache folder; "off": one with .disable


START = "python start"
IMPORT = "import tocsin"
STEVEDORE = "stevedore (cache on)"
DECLARED_ONE = "tocsin declared, send to 1"
DECLARED_ALL = "tocsin declared, send to 300"
EAGER_ALL = "tocsin eager, send to 300"
FLOOR_ONE = "floor: tocsin + pluggy (diag.)"
FLOOR_ALL = "floor: tocsin + pluggy + 300 (diag.)"

CONTENDERS = (
    Contender(START, "python -c pass", "pass", None, repeat=CHEAP_REPEAT),
    Contender(IMPORT, 'python -c "import tocsin"', "import tocsin", None, repeat=CHEAP_REPEAT),
    Contender(
        STEVEDORE,
        "ExtensionManager(invoke_on_load=False), cache read; call each plugin's handle",
        STEVEDORE_CODE,
        "plain",
    ),
    Contender(
        DECLARED_ONE,
        "declared receivers: import tocsin; load(); send ONE (plugin150 alone listens)",
        tocsin_code("ONE", reached=1, imported=1),
        "declared",
    ),
    Contender(
        DECLARED_ALL,
        "declared receivers: import tocsin; load(); send SIGNAL (imports all 300)",
        tocsin_code("SIGNAL", reached=N_PLUGINS, imported=N_PLUGINS),
        "declared",
    ),
    Contender(
        EAGER_ALL,
        "tocsin.plugins module entry points: import tocsin; load() imports 300; send",
        tocsin_code("SIGNAL", reached=N_PLUGINS, imported=N_PLUGINS),
        "tocsin",
    ),
    Contender(
        "pluggy",
        "load_setuptools_entrypoints(); call the hook",
        f"""
import pluggy
import bench_hooks
manager = pluggy.PluginManager("bench")
manager.add_hookspecs(bench_hooks)
manager.load_setuptools_entrypoints("{GROUP}")
reached = sum(manager.hook.handle(sender=None))
"""
        + check(N_PLUGINS),
        "pluggy",
    ),
    Contender(
        "bare importlib.metadata",
        "entry_points(group=...); ep.load() each; call handle",
        f"""
from importlib.metadata import entry_points
reached = sum(ep.load().handle(None) for ep in entry_points(group="{GROUP}"))
"""
        + check(N_PLUGINS),
        "plain",
    ),
    Contender(
        "stevedore, cache off (diag.)",
        "the same as stevedore, with a .disable file in its cache folder",
        STEVEDORE_CODE,
        "plain",
        diagnostic=True,
        stevedore_cache="off",
    ),
    Contender(
        "tocsin declared, no index (diag.)",
        "declared, send to 300, TOCSIN_NO_CACHE=1 (scans importlib.metadata)",
        tocsin_code("SIGNAL", reached=N_PLUGINS, imported=N_PLUGINS, from_cache=False),
        "declared",
        (("TOCSIN_NO_CACHE", "1"),),
        diagnostic=True,
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
        "import pluggy, then import_module each pluginNNN by name: the least an eager "
        "pluggy-backed manager pays",
        FLOOR_PLUGGY_CODE,
        "plain",
        diagnostic=True,
    ),
    Contender(
        FLOOR_ONE,
        "import tocsin and pluggy: the least a process pays that imports one plugin and "
        "registers it with pluggy",
        "import pluggy, tocsin",
        None,
        diagnostic=True,
    ),
    Contender(
        FLOOR_ALL,
        "import tocsin and pluggy, import_module each @receiver pluginNNN by name (no "
        "manager, no discovery), send",
        FLOOR_TOCSIN_CODE,
        "tocsin",
        diagnostic=True,
    ),
    Contender(
        "import tocsin._manager (diag.)",
        "import tocsin and its plugin machinery (pluggy, discovery, settings), no plugins",
        "import tocsin, tocsin._manager",
        None,
        diagnostic=True,
    ),
)


@dataclass(frozen=True)
class Goal:
    name: str
    contender: str
    limit: float
    kind: str  # "ratio": median / stevedore's median; "ms": median - python start's
    #: The row that does what the goal's process must do, and nothing of a manager's:
    #: below it no manager can go (while plugins are registered with pluggy).
    floor: str | None = None


GOALS = (
    Goal("declared, send to 1 / stevedore", DECLARED_ONE, 0.25, "ratio", FLOOR_ONE),
    Goal("declared, send to 300 / stevedore", DECLARED_ALL, 0.6, "ratio", FLOOR_ALL),
    Goal("eager, send to 300 / stevedore", EAGER_ALL, 0.75, "ratio", FLOOR_ALL),
    Goal("import tocsin - python start", IMPORT, 8.0, "ms"),
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
    #: XDG_CACHE_HOME per stevedore_cache setting ("on", "off").
    xdg_cache: dict[str, Path]

    def env_for(self, contender: Contender) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root / "home"),
            "TOCSIN_CACHE_DIR": str(self.tocsin_cache),
            "XDG_CACHE_HOME": str(self.xdg_cache[contender.stevedore_cache]),
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

    @property
    def stevedore_cache_dir(self) -> Path:
        return self.xdg_cache["on"] / "python-entrypoints"


def under_tmp(path: Path | str) -> bool:
    """Whether stevedore would turn its cache off for an interpreter at *path*: it
    compares the first four characters of ``sys.executable`` with ``/tmp``."""
    return str(path)[0:4] == STEVEDORE_NO_CACHE_PREFIX


def prepare_root(root: Path) -> Path:
    root = root.absolute()
    if under_tmp(root) or under_tmp(root.resolve()):
        raise SystemExit(
            f"bench_startup: {root} is under /tmp, where stevedore turns its cache off; "
            f"use --dir= somewhere else."
        )
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    # Keep the work folder out of git without touching the repository's .gitignore.
    ignore = root.parent / ".gitignore"
    if root.parent.name == ".work" and not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    return root


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
    xdg_cache = {"on": root / "xdg-cache", "off": root / "xdg-cache-off"}
    for folder in (workdir, root / "home", root / "tocsin-cache", *xdg_cache.values()):
        folder.mkdir()
    # The application's own pyproject.toml, without a [tool.tocsin] table: tocsin looks
    # for the nearest one upwards from the working directory, and must not find this
    # repository's (which mentions tocsin, so it would be parsed, importing tomllib).
    (workdir / "pyproject.toml").write_text(
        '[project]\nname = "bench-app"\nversion = "1.0"\n', encoding="utf-8"
    )
    (xdg_cache["off"] / "python-entrypoints").mkdir()
    (xdg_cache["off"] / "python-entrypoints" / ".disable").touch()
    # Before compiling, since a .pyc records its source's mtime.
    backdate(root)
    for folder in (site_packages, *sites.values()):
        compileall.compile_dir(folder, quiet=1, workers=0)
    return Workspace(root, python, site_packages, sites, workdir, root / "tocsin-cache", xdg_cache)


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
        (meta / "entry_points.txt").write_text(entry_points_text(kind, name), encoding="utf-8")
        package = site / name
        package.mkdir()
        extra = ONE_RECEIVER if kind == "declared" and number == ONE_PLUGIN else ""
        (package / "__init__.py").write_text(f'"""Bench plugin {name}."""\n\n{body}{extra}')


def backdate(root: Path) -> None:
    stamp = time.time() - BACKDATE_SECONDS
    for folder, dirs, files in os.walk(root):
        for item in (*dirs, *files):
            path = os.path.join(folder, item)
            if not os.path.islink(path):
                os.utime(path, (stamp, stamp))
        os.utime(folder, (stamp, stamp))


# -- running ---------------------------------------------------------------------------


def run_once(space: Workspace, contender: Contender, *extra: str) -> Run:
    """Run one process: its wall-clock and CPU seconds, its stdout and its stderr."""
    command = space.command(contender, *extra)
    env = space.env_for(contender)
    cpu_before = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=space.workdir, env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.perf_counter() - started
    cpu = children_cpu() - cpu_before
    if done.returncode != 0:
        raise RuntimeError(
            f"{contender.name} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return Run(elapsed, cpu, done.stdout, done.stderr)


class Run(NamedTuple):
    wall: float
    #: User + system CPU seconds of the process (NaN where the platform does not say).
    cpu: float
    stdout: str
    stderr: str


def children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children so far: the
    difference around one ``subprocess.run`` is that process's own.  A shared machine
    stretches wall-clock times (a process waits for a core); CPU time hardly moves."""
    try:
        import resource
    except ImportError:  # Windows
        return math.nan
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def warm_up(space: Workspace) -> None:
    """Run every contender once: the first tocsin runs scan and write the index, the
    first stevedore run writes its cache.  Then check both are read from now on."""
    # The ctime of every file set back is now: tocsin does not index files that young.
    time.sleep(RACY_SECONDS + 0.5)
    firsts = [
        Contender(
            f"tocsin {kind} (first run, writes the index)",
            "",
            tocsin_code("SIGNAL", reached=N_PLUGINS, imported=N_PLUGINS, from_cache=False),
            kind,
        )
        for kind in ("declared", "tocsin")
    ]
    for contender in (*firsts, *CONTENDERS):
        stderr = run_once(space, contender).stderr
        if stderr.strip():  # a warning would mean something is not what it seems
            raise RuntimeError(f"{contender.name} wrote to stderr:\n{stderr}")
    if len(list(space.tocsin_cache.glob("entry-points-*.idx"))) < 2:
        raise RuntimeError(f"tocsin wrote no index (one per site) in {space.tocsin_cache}")
    run_once(space, Contender("stevedore must read", "", STEVEDORE_MUST_READ_CACHE, "plain"))


MODULES_CODE = "import sys\nIMPORT\nprint(' '.join(sorted(sys.modules)))"


def imported_by_tocsin(space: Workspace) -> list[str]:
    """The modules ``import tocsin`` adds to what ``python -c pass`` has loaded."""
    loaded = []
    for statement in ("pass", "import tocsin"):
        probe = Contender("modules", "", MODULES_CODE.replace("IMPORT", statement), None)
        loaded.append(set(run_once(space, probe).stdout.split()))
    return sorted(loaded[1] - loaded[0])


def stevedore_cache_state(space: Workspace) -> dict[str, Any]:
    """What stevedore decides about its cache in the bench environment, and the cache
    files it wrote (call after the warm-up)."""
    probe = Contender("stevedore cache state", "", STEVEDORE_CACHE_STATE, "plain")
    state: dict[str, Any] = json.loads(run_once(space, probe).stdout)
    files = sorted(p.name for p in space.stevedore_cache_dir.glob("*") if p.is_file())
    state["files"] = files
    state["executable_under_tmp"] = under_tmp(state["executable"])
    state["on"] = not state["disabled"] and not state["disable_file"] and bool(files)
    return state


def describe_stevedore_cache(state: dict[str, Any]) -> str:
    verdict = "ON" if state["on"] else "OFF"
    return (
        f"stevedore's entry-point cache: {verdict} (sys.executable {state['executable']} "
        f"{'starts' if state['executable_under_tmp'] else 'does not start'} with /tmp; "
        f".disable file: {'yes' if state['disable_file'] else 'no'}; "
        f"stevedore._cache._c._disable_caching={state['disabled']}; "
        f"{len(state['files'])} cache file(s) in {state['dir']}; a run with the "
        f"rebuild made to fail succeeded, so the timed runs read the cache)"
    )


def measure(space: Workspace, runs: int) -> dict[str, list[Run]]:
    """Round-robin: every round runs each contender (``repeat`` times), starting one
    further along each round."""
    times: dict[str, list[Run]] = {c.name: [] for c in CONTENDERS}
    order = [c for c in CONTENDERS for _ in range(c.repeat)]
    # Spread the repeats over the round rather than running them back to back.
    order = order[::2] + order[1::2]
    count = len(order)
    for round_ in range(runs):
        for offset in range(count):
            contender = order[(round_ + offset) % count]
            times[contender.name].append(run_once(space, contender))
    return times


# -- profiling (--profile) -----------------------------------------------------------

PROFILE_CODE = """
import cProfile, pstats, sys
profile = cProfile.Profile()
profile.enable()
exec(compile(CODE, "<bench>", "exec"))
profile.disable()
pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(15)
"""

PROFILED = (IMPORT, DECLARED_ONE, DECLARED_ALL, EAGER_ALL)


def heaviest_imports(stderr: str, count: int = 20) -> list[tuple[int, int, str]]:
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            own, cumulative, module = line.removeprefix("import time:").split("|", 2)
            rows.append((int(cumulative), int(own), module[1:]))
    return sorted(rows, reverse=True)[:count]


def profile_tocsin(space: Workspace) -> str:
    """For each tocsin process: the heaviest imports and a cProfile."""
    out = io.StringIO()
    by_name = {c.name: c for c in CONTENDERS}
    for name in PROFILED:
        contender = by_name[name]
        run_once(space, contender, "-X", "importtime")  # once first: compiled, cached
        stderr = run_once(space, contender, "-X", "importtime").stderr
        print(f"--- {name}: -X importtime, heaviest (cumulative ms, self ms)", file=out)
        for cumulative, own, module in heaviest_imports(stderr):
            print(f"  {cumulative / 1000:7.2f}  {own / 1000:6.2f}  {module}", file=out)
        profiled = Contender(
            name, "", PROFILE_CODE.replace("CODE", repr(contender.code)), contender.site
        )
        stdout = run_once(space, profiled).stdout
        print(f"--- {name}: cProfile, by own time", file=out)
        print(stdout.strip(), file=out)
        print(file=out)
    return out.getvalue()


# -- reporting -----------------------------------------------------------------------


def summarize(times: dict[str, list[Run]]) -> dict[str, dict[str, Any]]:
    summary = {}
    for name, runs in times.items():
        wall = [run.wall * 1000 for run in runs]
        cpu = [run.cpu * 1000 for run in runs]
        summary[name] = {
            "min_ms": round(min(wall), 3),
            "median_ms": round(statistics.median(wall), 3),
            "mean_ms": round(statistics.fmean(wall), 3),
            "stdev_ms": round(statistics.stdev(wall), 3) if len(wall) > 1 else 0.0,
            "cpu_min_ms": round(min(cpu), 3),
            "cpu_median_ms": round(statistics.median(cpu), 3),
            "runs_ms": [round(v, 3) for v in wall],
            "cpu_runs_ms": [round(v, 3) for v in cpu],
        }
    return summary


#: What the goals are judged by: the median wall-clock time, and the median CPU time.
METRICS = {"wall": "median_ms", "cpu": "cpu_median_ms"}


def evaluate(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal by median wall-clock time (the verdict) and by median CPU time (what a
    quiet machine's wall clock would show), each with its floor and ok/MISS."""
    results = []
    for goal in GOALS:
        result: dict[str, Any] = {
            "goal": goal.name,
            "contender": goal.contender,
            "kind": goal.kind,
            "limit": goal.limit,
            "floor": goal.floor,
        }
        for metric, key in METRICS.items():
            value = summary[goal.contender][key]
            floor: float | None = None
            if goal.kind == "ratio":
                value /= summary[STEVEDORE][key]
                if goal.floor is not None:
                    floor = summary[goal.floor][key] / summary[STEVEDORE][key]
            else:
                value -= summary[START][key]
            result[metric] = {
                "value": round(value, 4),
                "met": value <= goal.limit,
                "floor": None if floor is None else round(floor, 4),
            }
        result["met"] = result["wall"]["met"]
        results.append(result)
    return results


def shown(goal: dict[str, Any], metric: str) -> str:
    value = goal[metric]["value"]
    verdict = "ok" if goal[metric]["met"] else "MISS"
    if goal["kind"] == "ratio":
        floor = goal[metric]["floor"]
        return f"{value:.2f}x {verdict}" + ("" if floor is None else f" (floor {floor:.2f}x)")
    return f"+{value:.1f} ms {verdict}"


def report(
    summary: dict[str, dict[str, Any]], goals: list[dict[str, Any]], runs: int, cache: str
) -> str:
    start = summary[START]
    stevedore = summary[STEVEDORE]
    rows = []
    for contender in CONTENDERS:
        s = summary[contender.name]
        rows.append(
            [
                contender.name,
                f"{s['min_ms']:.1f}",
                f"{s['median_ms']:.1f}",
                f"{s['median_ms'] - start['median_ms']:.1f}",
                f"{s['median_ms'] / stevedore['median_ms']:.2f}",
                f"{s['cpu_median_ms']:.1f}",
                f"{s['cpu_median_ms'] / stevedore['cpu_median_ms']:.2f}",
            ]
        )
    text = table(
        ["contender", "min", "median", "- start", "/ stevedore", "cpu median", "/ stevedore"],
        rows,
        title=(
            f"Whole process, {N_PLUGINS} plugin distributions, {runs} interleaved rounds "
            f"({python_description()}); {cache}.\nMilliseconds: wall clock (min, median, "
            f"median less python's start) and CPU time (user + system) of the process."
        ),
    )
    text += "\n\n" + table(
        ["goal", "limit", "by wall-clock median", "by CPU-time median"],
        [
            [
                g["goal"],
                f"<= {g['limit']}x" if g["kind"] == "ratio" else f"<= {g['limit']:g} ms",
                shown(g, "wall"),
                shown(g, "cpu"),
            ]
            for g in goals
        ],
        title=(
            "Goals (issue 13), against stevedore with its cache on.  A floor is the diag. "
            "row doing the same work\nwith no manager (python, tocsin, pluggy, the "
            "imports): no manager that keeps pluggy underneath can go below it."
        ),
    )
    return text


def parse(argv: list[str]) -> tuple[int, bool, bool, Path]:
    runs = DEFAULT_RUNS
    keep = profile = False
    root = Path(os.environ.get("TOCSIN_BENCH_DIR") or DEFAULT_WORK_DIR)
    for arg in argv:
        if arg == "--quick":
            runs = QUICK_RUNS
        elif arg.startswith("--runs="):
            runs = int(arg.partition("=")[2])
        elif arg == "--keep":
            keep = True
        elif arg == "--profile":
            profile = True
        elif arg.startswith("--dir="):
            root = Path(arg.partition("=")[2]).expanduser()
        else:
            raise SystemExit(f"bench_startup: unknown option {arg!r}")
    if runs < 2:
        raise SystemExit("bench_startup: --runs must be at least 2")
    return runs, keep, profile, root


def main(argv: list[str] | None = None) -> int:
    runs, keep, profile, root = parse(sys.argv[1:] if argv is None else argv)
    root = prepare_root(root)
    try:
        print(f"Setting up {N_PLUGINS} plugin distributions x 4 module kinds in {root} ...")
        started = time.perf_counter()
        space = build_workspace(root)
        warm_up(space)
        cache = stevedore_cache_state(space)
        print(f"  ready in {time.perf_counter() - started:.1f} s (venv, sites, compiled, warm)")
        print(f"  {describe_stevedore_cache(cache)}")
        modules = imported_by_tocsin(space)
        print(
            f"  import tocsin loads {len(modules)} modules beyond python's start: "
            f"{' '.join(modules)}"
        )
        if not cache["on"]:
            raise SystemExit("bench_startup: stevedore's cache is off; the comparison is void")
        times = measure(space, runs)
        summary = summarize(times)
        goals = evaluate(summary)
        print()
        print(report(summary, goals, runs, "stevedore cache: ON" if cache["on"] else "OFF"))
        profile_text = ""
        if profile:
            profile_text = profile_tocsin(space)
            print()
            print(profile_text)
        path = write_results(
            "startup",
            {
                "benchmark": "startup",
                "environment": environment("pluggy", "stevedore"),
                "plugins": N_PLUGINS,
                "runs": runs,
                "work_dir": str(root),
                "stevedore_cache": cache,
                "imported_by_import_tocsin": modules,
                "goal": "; ".join(f"{g['goal']}: {shown(g, 'wall')}" for g in goals),
                "goals": goals,
                "goals_met": all(g["met"] for g in goals),
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
