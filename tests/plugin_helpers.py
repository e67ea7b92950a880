"""Real plugin distributions for the plugin-manager tests, and a way to run them.

``build_site`` writes small projects (a pyproject.toml and a package each) and has pip
build and install them into one ``--target`` directory: real wheels, real dist-info
folders, real entry points.  ``write_dist_info`` hand-writes dist-info folders where a
test needs many of them, or the same distribution twice.  ``run_scenario`` runs a piece
of Python in a fresh interpreter with chosen directories on its path, and returns the
JSON it reports.

Every test plugin declares its entry points in the group :data:`GROUP` (not
``tocsin.plugins``), so whatever else is installed in the interpreter is never seen.
The plugins connect to the signals of the plain module ``tt_host``, installed beside
them; ``tt_host.note()`` records each import (in ``tt_host.events``, and in the file
named by ``$TT_MARKER``), which is how the tests prove what was and was not imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tocsin.testing import pip_install

GROUP = "tocsintest.plugins"

#: Environment variables that change what a PluginManager does.
TOCSIN_VARIABLES = (
    "TOCSIN_DISABLE_PLUGIN_AUTOLOAD",
    "TOCSIN_DISABLED_PLUGINS",
    "TOCSIN_PLUGINS",
    "TOCSIN_STRICT_PLUGINS",
    "TOCSIN_NO_CACHE",
    "TOCSIN_CACHE_DIR",
)

HOST = '''
"""The application the test plugins plug into."""
import os

from tocsin import Signal

ping = Signal(providing_args=["n"], name="tt.ping")
pong = Signal(name="tt.pong")


class Shop:
    pass


class Bank:
    pass


events = []


def note(event):
    events.append(event)
    marker = os.environ.get("TT_MARKER")
    if marker:
        with open(marker, "a", encoding="utf-8") as out:
            out.write(event + "\\n")
'''

ALPHA = '''
"""alpha: module-level receivers with sender filters, dispatch_uids and priorities."""
import tocsin
import tt_host
from tt_host import Shop, ping, pong

tt_host.note("import tt_alpha.receivers")


@tocsin.receiver(ping, dispatch_uid="alpha-any")
def alpha_any(sender, **kwargs):
    return "alpha-any"


@tocsin.receiver(ping, sender=Shop, priority=5)
def alpha_shop(sender, **kwargs):
    return "alpha-shop"


@tocsin.receiver([ping, pong], sender="bank", dispatch_uid="shared")
def alpha_bank(sender, **kwargs):
    return "alpha-bank"


@tocsin.hookimpl
def tocsin_plugin_enabled(manager, name):
    tt_host.note(f"alpha saw enabled {name}")


@tocsin.hookimpl
def tocsin_plugin_disabled(manager, name):
    tt_host.note(f"alpha saw disabled {name}")
'''

BETA = '''
"""beta: the entry point names a class instance whose methods are receivers."""
import tocsin
import tt_host
from tt_host import Bank, ping, pong

tt_host.note("import tt_beta")


class Tally:
    def __init__(self, label):
        self.label = label
        self.calls = []

    @tocsin.receiver(ping, priority=-1)
    def on_ping(self, sender, **kwargs):
        self.calls.append("ping")
        return f"beta-ping:{self.label}"

    @tocsin.receiver(pong, sender=Bank, dispatch_uid="beta-pong")
    def on_pong(self, sender, **kwargs):
        self.calls.append("pong")
        return f"beta-pong:{self.label}"

    @tocsin.hookimpl
    def tocsin_plugin_enabled(self, manager, name):
        tt_host.note(f"beta saw enabled {name}")

    @tocsin.hookimpl
    def tocsin_plugin_disabled(self, manager, name):
        tt_host.note(f"beta saw disabled {name}")


plugin = Tally("main")
'''

GAMMA = '''
"""gamma: the same dispatch_uid as alpha, and its own sender filters."""
import tocsin
import tt_host
from tt_host import Bank, ping

tt_host.note("import tt_gamma")


@tocsin.receiver(ping, sender="bank", dispatch_uid="shared")
def gamma_bank(sender, **kwargs):
    return "gamma-bank"


@tocsin.receiver(ping, sender=Bank)
def gamma_bank_class(sender, **kwargs):
    return "gamma-Bank"
'''

FIRST = '''
"""a-first: first by entry-point name, last by distribution name."""
import tocsin
import tt_host
from tt_host import ping

tt_host.note("import tt_zz_first")


@tocsin.receiver(ping)
def first(sender, **kwargs):
    return "a-first"
'''

DELTA = '''
"""delta: a module plugin that also defines a class with receiver methods."""
import tocsin
import tt_host
from tt_host import ping

tt_host.note("import tt_delta")


class Helper:
    @tocsin.receiver(ping)
    def on_ping(self, sender, **kwargs):
        return "delta-method"

    @tocsin.receiver(ping, sender="delta")
    def on_delta(self, sender, **kwargs):
        return "delta-bound"


helper = Helper()
on_delta = helper.on_delta  # a bound method in the namespace: a receiver with a self


@tocsin.receiver(ping, sender="delta")
def delta_ping(sender, **kwargs):
    return "delta"
'''

BROKEN = {
    "__init__": 'import tt_host\ntt_host.note("import tt_broken")\n',
    "missing": """
import tocsin
import tt_host
from tt_host import ping

tt_host.note("import tt_broken.missing")


@tocsin.receiver(ping)
def missing_receiver(sender, **kwargs):
    return "missing"


import tt_no_such_module_anywhere  # noqa: E402
""",
    "fine": """
import tocsin
import tt_host
from tt_host import ping

tt_host.note("import tt_broken.fine")


@tocsin.receiver(ping)
def fine_receiver(sender, **kwargs):
    return "fine"
""",
    "half": """
import tocsin
import tt_host
from tt_host import ping, pong

tt_host.note("import tt_broken.half")


@tocsin.receiver(ping)
def half_early(sender, **kwargs):
    return "half-early"


@tocsin.receiver(pong, dispatch_uid="half-uid", weak=False)
def half_strong(sender, **kwargs):
    return "half-strong"


raise RuntimeError("half way through")
""",
    "exits": """
import tocsin
import tt_host
from tt_host import ping

tt_host.note("import tt_broken.exits")


@tocsin.receiver(ping)
def exits_receiver(sender, **kwargs):
    return "exits"


raise SystemExit(3)
""",
    "hookboom": """
import tocsin
import tt_host
from tt_host import ping

tt_host.note("import tt_broken.hookboom")


@tocsin.receiver(ping)
def hookboom_receiver(sender, **kwargs):
    return "hookboom"


@tocsin.hookimpl
def tocsin_plugin_enabled(manager, name):
    if name == "broken-hookboom":
        raise LookupError("cannot set up")
""",
    "badhook": """
import tocsin
import tt_host
from tt_host import ping

tt_host.note("import tt_broken.badhook")


@tocsin.receiver(ping)
def badhook_receiver(sender, **kwargs):
    return "badhook"


@tocsin.hookimpl
def tocsin_plugin_enabled(manager, name, surprise):
    pass
""",
}

#: The distributions build_site installs: name -> (version, entry points, modules).
DISTRIBUTIONS: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "tt-alpha": (
        "1.0.0",
        {"alpha": "tt_alpha.receivers"},
        {"tt_alpha/__init__": "", "tt_alpha/receivers": ALPHA},
    ),
    "tt-beta": ("2.0.0", {"beta": "tt_beta:plugin"}, {"tt_beta/__init__": BETA}),
    "tt-gamma": ("0.3.0", {"gamma": "tt_gamma"}, {"tt_gamma/__init__": GAMMA}),
    "tt-delta": ("4.0", {"delta": "tt_delta"}, {"tt_delta/__init__": DELTA}),
    "tt-zz-first": ("0.1.0", {"a-first": "tt_zz_first"}, {"tt_zz_first/__init__": FIRST}),
    "tt-broken": (
        "0.0.1",
        {
            "broken-attr": "tt_broken.fine:nope",
            "broken-exit": "tt_broken.exits",
            "broken-hook": "tt_broken.badhook",
            "broken-hookboom": "tt_broken.hookboom",
            "broken-missing": "tt_broken.missing",
            "broken-raise": "tt_broken.half",
        },
        {f"tt_broken/{name}": source for name, source in BROKEN.items()},
    ),
}

GOOD = ["a-first", "alpha", "beta", "delta", "gamma"]
BROKEN_NAMES = [
    "broken-attr",
    "broken-exit",
    "broken-hook",
    "broken-hookboom",
    "broken-missing",
    "broken-raise",
]
#: The error each broken plugin fails with, and the module its import records first.
BROKEN_ERRORS = {
    "broken-attr": "AttributeError",
    "broken-exit": "SystemExit",
    "broken-hook": "PluginValidationError",
    "broken-hookboom": "LookupError",
    "broken-missing": "ModuleNotFoundError",
    "broken-raise": "RuntimeError",
}
#: What a broken plugin's receivers answer, were they (wrongly) left connected.
BROKEN_RESPONSES = {"missing", "fine", "half-early", "half-strong", "exits", "hookboom", "badhook"}
ALL_NAMES = sorted(GOOD + BROKEN_NAMES)


def write_project(
    root: Path, name: str, version: str, entry_points: Mapping[str, str], modules: dict[str, str]
) -> Path:
    """A source tree pip can build: pyproject.toml and the given modules."""
    project = root / name
    packages = sorted({path.split("/")[0] for path in modules if "/" in path})
    py_modules = sorted(path for path in modules if "/" not in path)
    points = "".join(f'"{key}" = "{value}"\n' for key, value in entry_points.items())
    (project).mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "{version}"
            description = "A plugin for tocsin's own tests."
            requires-python = ">=3.10"

            [project.entry-points."{GROUP}"]
            """
        )
        + points
        + "\n[tool.setuptools]\n"
        + f"packages = {json.dumps(packages)}\n"
        + f"py-modules = {json.dumps(py_modules)}\n",
        encoding="utf-8",
    )
    for path, source in modules.items():
        write_module(project, path, source)
    return project


def write_module(root: Path, path: str, source: str) -> Path:
    """Write ``root/<path>.py`` (``path`` like ``pkg/mod``), creating folders."""
    target = root / f"{path}.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return target


def build_site(root: Path) -> Path:
    """Build every distribution of DISTRIBUTIONS with pip into ``root/site``."""
    sources = root / "src"
    projects = [
        write_project(sources, name, version, points, modules)
        for name, (version, points, modules) in DISTRIBUTIONS.items()
    ]
    site = root / "site"
    pip_install(projects, site)
    write_module(site, "tt_host", HOST)
    return site


def write_dist_info(
    site: Path,
    name: str,
    version: str,
    entry_points: Mapping[str, str],
    group: str = GROUP,
) -> Path:
    """Hand-write a minimal dist-info folder (METADATA and entry_points.txt)."""
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (folder / "entry_points.txt").write_text(f"[{group}]\n{lines}", encoding="utf-8")
    return folder


def age(site: Path, seconds: float = 3600.0) -> float:
    """Set every dist-info folder and file in *site* to *seconds* ago; return that time."""
    when = time.time() - seconds
    for folder in site.iterdir():
        if folder.name.endswith((".dist-info", ".egg-info")):
            for item in folder.iterdir():
                os.utime(item, (when, when))
            os.utime(folder, (when, when))
    return when


def index_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("entry-points-*")) if cache.is_dir() else []


PRELUDE = """
import json, logging, os, sys, warnings

warnings.simplefilter("always")
_catcher = warnings.catch_warnings(record=True)
WARNINGS = _catcher.__enter__()
warnings.simplefilter("always")
LOGS = []


class _Handler(logging.Handler):
    def emit(self, record):
        LOGS.append([record.name, record.levelname, record.getMessage(), bool(record.exc_info)])


logging.getLogger("tocsin").addHandler(_Handler())
logging.getLogger("tocsin").setLevel(logging.DEBUG)

import tocsin
from tocsin import PluginLoadError, PluginManager, TocsinPluginWarning

GROUP = "tocsintest.plugins"
out = {}


def imported():
    return sorted(m for m in sys.modules if m.startswith("tt_") and m != "tt_host")


def state(pm):
    return {
        name: {
            "enabled": info.enabled,
            "loaded": info.loaded,
            "error": type(info.error).__name__ if info.error else None,
            "distribution": info.distribution,
            "version": info.version,
            "receivers": len(info.receivers),
        }
        for name, info in pm.items()
    }


def fired(signal, sender=None):
    return [str(response) for _, response in signal.send(sender)]


def plugin_warnings():
    return [str(w.message) for w in WARNINGS if issubclass(w.category, TocsinPluginWarning)]
"""

EPILOGUE = """
out.setdefault("imported", imported())
out.setdefault("warnings", plugin_warnings())
out.setdefault("other_warnings", [
    f"{w.category.__name__}: {w.message}" for w in WARNINGS
    if not issubclass(w.category, TocsinPluginWarning)
])
out.setdefault("logs", LOGS)
print("@@RESULT@@" + json.dumps(out, default=repr))
"""


def run_scenario(
    code: str,
    *,
    path: Iterable[Path],
    cache: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    marker: Path | None = None,
) -> dict[str, Any]:
    """Run *code* in a fresh interpreter with *path* first on sys.path; return ``out``.

    The code sees the helpers of PRELUDE (``state``, ``fired``, ``imported``...), fills
    the dict ``out``, and gets the plugin warnings, the ``tocsin`` log records and the
    ``tt_*`` modules imported added to it.
    """
    environ = {k: v for k, v in os.environ.items() if k not in TOCSIN_VARIABLES}
    environ.pop("PYTHONPATH", None)
    environ.update(
        PYTHONPATH=os.pathsep.join(str(p) for p in path),
        TOCSIN_CACHE_DIR=str(cache),
        PYTHONDONTWRITEBYTECODE="1",
    )
    if marker is not None:
        environ["TT_MARKER"] = str(marker)
    environ.update(env or {})
    program = PRELUDE + textwrap.dedent(code) + EPILOGUE
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env=environ,
        cwd=str(cwd) if cwd is not None else str(cache.parent),
        check=False,
        timeout=120,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("@@RESULT@@")]
    if result.returncode or not lines:
        raise AssertionError(
            f"scenario failed with exit code {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    data: dict[str, Any] = json.loads(lines[-1].removeprefix("@@RESULT@@"))
    return data


def marker_lines(marker: Path) -> list[str]:
    return marker.read_text(encoding="utf-8").splitlines() if marker.exists() else []


def purge_modules(prefix: str = "tt_") -> None:
    """Forget the test plugins' modules, so the next import runs them afresh."""
    for name in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[name]
