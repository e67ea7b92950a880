"""Plugins that misbehave (issue 14, item 1): each is a real distribution built with pip
(the ``tocsin_plugin_dist`` fixture) and imported in this process, beside a plugin that
works.

Whatever a plugin raises while it is imported, inspected for receivers and hooks, or
registered is that plugin's error: what it connected is dropped, pluggy does not have
it, ``PluginInfo.error`` says why, and the other plugins load.  A BaseException gets
the same rollback and goes on its way.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tocsin import PluginLoadError, PluginManager, TocsinPluginWarning
from tocsin._discovery import discover
from tocsin._import_times import import_times
from tocsin.testing import install_plugin_distribution, pip_install

#: The signals the test plugins connect to, in a module of their own distribution.
SIGNALS = """
from tocsin import Signal

ping = Signal(name="hostile.ping")
"""

#: A plugin that works: loaded beside every hostile one, it must always load.
GOOD = """
import tocsin
import {signals} as s


@tocsin.receiver(s.ping)
def good(sender, **kwargs):
    return "good"
"""

#: What every hostile plugin connects while it imports, before it misbehaves: a
#: ``@receiver`` and a plain (strong) ``connect()``.  None of it may stay connected.
CONNECTS = """
import tocsin
import {signals} as s


@tocsin.receiver(s.ping)
def marked(sender, **kwargs):
    return "hostile-marked"


def plain(sender, **kwargs):
    return "hostile-plain"


s.ping.connect(plain, weak=False)


@tocsin.hookimpl
def tocsin_plugin_enabled(manager, name):
    s.enabled_seen.append(name)
"""

LOCALPROXY_REQUEST = CONNECTS + "\nfrom flask import request  # a LocalProxy, outside a request\n"
LOCALPROXY_UNBOUND = (
    CONNECTS
    + """
from contextvars import ContextVar

from werkzeug.local import LocalProxy

current_user = LocalProxy(ContextVar("user"))  # unbound: every attribute raises
"""
)
DIR_RAISES = (
    CONNECTS
    + """

def __dir__():
    raise RuntimeError("this module cannot be listed")
"""
)
PROPERTY_RAISES = """
import tocsin
import {signals} as s


def plain(sender, **kwargs):
    return "hostile-plain"


s.ping.connect(plain, weak=False)


class Plugin:
    @tocsin.receiver(s.ping)
    def marked(self, sender, **kwargs):
        return "hostile-marked"

    @property
    def settings(self):
        raise RuntimeError("no settings outside an application")


plugin = Plugin()
"""

HOSTILE = {
    "flask-request": (LOCALPROXY_REQUEST, None, RuntimeError, "outside of request context"),
    "unbound-localproxy": (LOCALPROXY_UNBOUND, None, RuntimeError, "not bound"),
    "module-dir": (DIR_RAISES, None, RuntimeError, "cannot be listed"),
    "instance-property": (PROPERTY_RAISES, "plugin", RuntimeError, "no settings"),
}


@pytest.fixture
def signals(tocsin_plugin_dist: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The signals module, importable (and put on the path) for the test."""
    name = f"hostile_signals_{os.urandom(4).hex()}"
    directory = tmp_path_factory.mktemp("hostile-signals")
    (directory / f"{name}.py").write_text(textwrap.dedent(SIGNALS), encoding="utf-8")
    sys.path.insert(0, str(directory))
    try:
        module = importlib.import_module(name)
        module.enabled_seen = []  # type: ignore[attr-defined]
        yield module
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop(name, None)


@pytest.fixture
def install(tocsin_plugin_dist: Any, signals: Any) -> Any:
    """install(source, **options) -> PluginDistribution; {signals} in the source names
    the signals module."""

    def build(source: str, **options: Any) -> Any:
        return tocsin_plugin_dist(source.replace("{signals}", signals.__name__), **options)

    return build


def answers(signals: Any) -> list[Any]:
    return sorted(str(r) for _, r in signals.ping.send(None))


def assert_rolled_back(pm: PluginManager, name: str, signals: Any) -> None:
    """Nothing of plugin *name* is connected, registered or recorded as its receivers."""
    info = pm[name]
    assert not info.enabled
    assert not info.receivers
    assert pm.pluggy_manager.get_plugin(name) is None
    assert not any(str(r).startswith("hostile") for _, r in signals.ping.send(None))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_plugin_whose_attributes_raise_fails_alone(
    case: str, install: Any, signals: Any, tocsin_plugin_manager_factory: Any
) -> None:
    source, attribute, error_type, message = HOSTILE[case]
    if case == "flask-request":
        pytest.importorskip("flask")
    bad = install(source, name=f"a-{case}", attribute=attribute)  # sorts before the good one
    good = install(GOOD, name="z-good")
    pm: PluginManager = tocsin_plugin_manager_factory()
    with pytest.warns(TocsinPluginWarning, match=f"Plugin '{bad.name}'.*{message}"):
        assert pm.load() == [good.name]
    error = pm[bad.name].error
    assert type(error) is error_type
    assert message in str(error)
    assert_rolled_back(pm, bad.name, signals)
    assert answers(signals) == ["good"]
    # Its hook never ran for the plugins after it: pluggy never had it.
    assert signals.enabled_seen == []
    # Trying again fails again, the same way, and still leaves nothing behind.
    with pytest.raises(PluginLoadError, match=message) as raised:
        pm.enable(bad.name)
    assert type(raised.value.__cause__) is error_type
    assert_rolled_back(pm, bad.name, signals)
    assert answers(signals) == ["good"]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_register_by_hand_of_an_object_whose_attributes_raise(
    case: str, install: Any, signals: Any, tocsin_plugin_manager_factory: Any
) -> None:
    source, attribute, error_type, message = HOSTILE[case]
    if case == "flask-request":
        pytest.importorskip("flask")
    dist = install(source)
    obj = importlib.import_module(dist.module)
    if attribute:
        obj = getattr(obj, attribute)
    pm: PluginManager = tocsin_plugin_manager_factory()
    good = install(GOOD)
    assert pm.register(importlib.import_module(good.module), name="good") == "good"
    before = answers(signals)  # with what the test's own import of the module connected
    with pytest.raises(PluginLoadError, match=message) as raised:
        pm.register(obj, name="hostile")
    assert type(raised.value.__cause__) is error_type
    assert "hostile" not in pm
    assert pm.pluggy_manager.get_plugin("hostile") is None
    assert answers(signals) == before  # the manager connected nothing, dropped nothing
    assert pm["good"].enabled
    assert "good" in before


def test_register_of_an_object_whose_name_cannot_be_asked(
    tocsin_plugin_manager_factory: Any,
) -> None:
    class Hostile:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(f"no {name} here")

    pm: PluginManager = tocsin_plugin_manager_factory()
    name = pm.register(Hostile())  # named by its class, as any object without __name__
    assert name.endswith(".Hostile")
    assert pm[name].enabled
    assert pm[name].error is None


FLASK_APP = """
import json
import sys
import warnings

import flask

from tocsin.contrib.flask import Tocsin

warnings.simplefilter("default")  # the broken plugin's TocsinPluginWarning, on stderr
app = flask.Flask("hostile")
app.config["TOCSIN"] = {"plugins": sys.argv[1:]}
extension = Tocsin(app)
report = {
    name: {"enabled": info.enabled, "error": type(info.error).__name__ if info.error else None}
    for name, info in extension.plugins.items()
}
print(json.dumps(report))
"""


def test_flask_extension_carries_on_past_a_localproxy_plugin(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    bad = install_plugin_distribution(
        tmp_path / "bad",
        "import tocsin\nfrom flask import request\n\n\n@tocsin.receiver(tocsin.Signal())\n"
        "def r(sender, **kwargs):\n    pass\n",
        group="tocsin.plugins",
        name="a-hostile-request",
    )
    good = install_plugin_distribution(
        tmp_path / "good",
        "import tocsin\n\n\n@tocsin.receiver(tocsin.Signal())\ndef r(sender, **kwargs):\n"
        "    pass\n",
        group="tocsin.plugins",
        name="z-good",
    )
    script = tmp_path / "app.py"
    script.write_text(FLASK_APP, encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(bad.path), str(good.path)])
    environment["TOCSIN_CACHE_DIR"] = str(tmp_path / "cache")
    result = subprocess.run(
        [sys.executable, str(script), bad.name, good.name],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report[bad.name] == {"enabled": False, "error": "RuntimeError"}
    assert report[good.name] == {"enabled": True, "error": None}
    assert "Working outside of request context" in result.stderr  # warned about


# -- BaseException --------------------------------------------------------------------


def test_a_keyboard_interrupt_while_inspecting_is_rolled_back_and_re_raised(
    install: Any, signals: Any, tocsin_plugin_manager_factory: Any, tmp_path: Path
) -> None:
    flag = tmp_path / "interrupt"
    flag.write_text("yes")
    source = CONNECTS + textwrap.dedent(
        f"""

        import pathlib


        def __dir__():
            if pathlib.Path({str(flag)!r}).exists():
                raise KeyboardInterrupt
            return sorted(globals())
        """
    )
    dist = install(source, name="a-interrupted")
    good = install(GOOD, name="z-good")
    pm: PluginManager = tocsin_plugin_manager_factory()
    with pytest.raises(KeyboardInterrupt):
        pm.load()
    info = pm[dist.name]
    assert isinstance(info.error, KeyboardInterrupt)
    assert_rolled_back(pm, dist.name, signals)
    assert answers(signals) == []  # nothing after it was loaded: the interrupt went on
    assert dist.module not in sys.modules  # its import is undone, to run again

    flag.unlink()
    assert pm.load() == [good.name]  # the rest
    pm.enable(dist.name)
    assert pm[dist.name].error is None
    assert answers(signals) == ["good", "hostile-marked", "hostile-plain"]  # each once
    pm.disable(dist.name)
    pm.enable(dist.name)
    assert answers(signals) == ["good", "hostile-marked", "hostile-plain"]


def test_a_keyboard_interrupt_in_a_property_of_an_instance_plugin(
    install: Any, signals: Any, tocsin_plugin_manager_factory: Any
) -> None:
    source = PROPERTY_RAISES.replace(
        'raise RuntimeError("no settings outside an application")', "raise KeyboardInterrupt"
    )
    dist = install(source, attribute="plugin")
    pm: PluginManager = tocsin_plugin_manager_factory()
    with pytest.raises(KeyboardInterrupt):
        pm.load()
    assert isinstance(pm[dist.name].error, KeyboardInterrupt)
    assert_rolled_back(pm, dist.name, signals)
    obj = importlib.import_module(dist.module).plugin
    assert answers(signals) == ["hostile-plain"]  # the test's own import connected it
    with pytest.raises(KeyboardInterrupt):
        pm.register(obj, name="by-hand")
    assert "by-hand" not in pm
    assert pm.pluggy_manager.get_plugin("by-hand") is None
    assert answers(signals) == ["hostile-plain"]


def test_a_keyboard_interrupt_in_an_enabled_hook(
    install: Any, signals: Any, tocsin_plugin_manager_factory: Any
) -> None:
    source = CONNECTS.replace("s.enabled_seen.append(name)", "raise KeyboardInterrupt")
    dist = install(source)
    pm: PluginManager = tocsin_plugin_manager_factory()
    with pytest.raises(KeyboardInterrupt):
        pm.load()
    info = pm[dist.name]
    assert not info.enabled
    assert isinstance(info.error, KeyboardInterrupt)
    assert pm.pluggy_manager.get_plugin(dist.name) is None
    assert answers(signals) == []


# -- one module, two entry points -----------------------------------------------------

TWICE = """
import tocsin
import {signals} as s


@tocsin.receiver(s.ping)
def marked(sender, **kwargs):
    return "twice-marked"


def plain(sender, **kwargs):
    return "twice-plain"


s.ping.connect(plain, weak=False)
"""


def install_project(
    root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str], group: str
) -> Path:
    """Build a distribution with several entry points in *group* with pip; return the
    directory it was installed into (put on sys.path by the caller)."""
    project = root / "src" / name
    project.mkdir(parents=True)
    points = "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in entry_points.items())
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=70.1"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\n\n'
        f"[project.entry-points.{json.dumps(group)}]\n{points}\n"
        f"[tool.setuptools]\npy-modules = {json.dumps(sorted(modules))}\n",
        encoding="utf-8",
    )
    for module, source in modules.items():
        (project / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    site = root / "site"
    pip_install([project], site)
    return site


def test_two_entry_points_naming_one_module(
    signals: Any,
    tocsin_plugin_group: str,
    tocsin_plugin_manager_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = f"hostile_twice_{os.urandom(4).hex()}"
    site = install_project(
        tmp_path,
        "hostile-twice",
        {"t1": module, "t2": module},
        {module: TWICE.replace("{signals}", signals.__name__)},
        tocsin_plugin_group,
    )
    monkeypatch.syspath_prepend(str(site))
    try:
        pm: PluginManager = tocsin_plugin_manager_factory()
        with pytest.warns(TocsinPluginWarning, match="'t2'.*is plugin 't1'"):
            assert pm.load() == ["t1"]
        both = ["twice-marked", "twice-plain"]
        assert answers(signals) == both
        first, second = pm["t1"], pm["t2"]
        assert first.enabled
        assert all(r.connected for r in first.receivers)
        assert len(first.receivers) == 2
        assert not second.enabled
        assert not second.loaded
        assert not second.receivers
        assert isinstance(second.error, ValueError)
        assert f"module {module!r} is plugin 't1'" in str(second.error)
        assert "Remove one of the two entry points" in str(second.error)
        # Asking for the second again is refused again; the first is never touched.
        with pytest.raises(PluginLoadError, match="is plugin 't1'"):
            pm.enable("t2")
        pm.disable("t2")
        assert answers(signals) == both
        assert pm["t1"].enabled
        assert all(r.connected for r in pm["t1"].receivers)
        # Even with the first disabled, the second cannot take its module over.
        pm.disable("t1")
        with pytest.raises(PluginLoadError, match="is plugin 't1'"):
            pm.enable("t2")
        assert answers(signals) == []
        pm.enable("t1")
        assert answers(signals) == both  # once each
        # register() by hand of the same module is refused the same way.
        with pytest.raises(PluginLoadError, match="is plugin 't1'"):
            pm.register(sys.modules[module], name="t3")
        assert answers(signals) == both
    finally:
        sys.modules.pop(module, None)


# -- entry-point values ---------------------------------------------------------------

INSTANCE = """
import tocsin
import {signals} as s


class Plugin:
    @tocsin.receiver(s.ping)
    def on_ping(self, sender, **kwargs):
        return "extras"


plugin = Plugin()
"""


@pytest.mark.parametrize("attribute", [None, "plugin"])
def test_extras_in_an_entry_point_value_are_what_entry_point_load_makes_of_them(
    attribute: str | None, install: Any, signals: Any, tocsin_plugin_manager_factory: Any
) -> None:
    source = INSTANCE if attribute else GOOD.replace('"good"', '"extras"')
    dist = install(source, attribute=f"{attribute} [fast, other]" if attribute else None)
    if not attribute:
        # A module plugin with extras: rewrite its installed entry point's value.
        entry_points = next(dist.path.glob("*.dist-info")) / "entry_points.txt"
        text = entry_points.read_text("utf-8")
        entry_points.write_text(text.replace(dist.module, f"{dist.module} [fast]"), "utf-8")
    from importlib.metadata import entry_points as all_entry_points

    (point,) = [p for p in all_entry_points(group=dist.group) if p.name == dist.name]
    assert "[" in point.value
    pm: PluginManager = tocsin_plugin_manager_factory()
    assert pm.load() == [dist.name]
    assert pm[dist.name].plugin is point.load()
    assert answers(signals) == ["extras"]


# -- a distribution without a name ----------------------------------------------------


def test_a_distribution_without_a_name_is_reported(
    install: Any,
    signals: Any,
    tocsin_plugin_manager_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nameless = install(GOOD, name="nameless")
    good = install(GOOD, name="named")
    (folder,) = nameless.path.glob("*.dist-info")
    metadata = folder / "METADATA"
    lines = metadata.read_text("utf-8").splitlines(keepends=True)
    metadata.write_text("".join(line for line in lines if not line.startswith("Name:")), "utf-8")
    pm: PluginManager = tocsin_plugin_manager_factory()
    for attempt in range(2):  # not remembered in the index: warned on every load
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tocsin.plugins"):
            found = discover(pm.group)
        assert [e.name for e in found.entries] == [good.name]
        warnings = [r.getMessage() for r in caplog.records if "has no Name" in r.getMessage()]
        assert len(warnings) == 1, (attempt, caplog.records)
        assert str(folder) in warnings[0]
        assert f"nameless = {nameless.module}" in warnings[0]
        assert not found.from_cache
    with caplog.at_level(logging.WARNING, logger="tocsin.plugins"):
        assert pm.load() == [good.name]
    assert any(str(folder) in r.getMessage() for r in caplog.records)


# -- import times ---------------------------------------------------------------------

HANGS = """
import os
import threading

with open({pidfile!r}, "w") as out:
    out.write(str(os.getpid()))
print("this goes to stderr, not into the result")
threading.Event().wait()  # blocks forever
"""

SLOWISH = """
import time

print("chatty")
time.sleep(0.2)
"""


def test_import_times_stops_a_plugin_that_hangs_and_times_the_others(
    install: Any, tocsin_plugin_manager_factory: Any, tmp_path: Path
) -> None:
    pidfile = tmp_path / "hanging.pid"
    hangs = install(HANGS.replace("{pidfile!r}", repr(str(pidfile))), name="hangs")
    fine = install(SLOWISH, name="fine")
    broken = install("raise ValueError('no configuration')\n", name="broken")
    skipped = install(HANGS.replace("{pidfile!r}", repr(str(tmp_path / "x"))), name="skipped")
    pm: PluginManager = tocsin_plugin_manager_factory(disabled=[skipped.name])
    started = time.monotonic()
    times = import_times(timeout=3, manager=pm)
    elapsed = time.monotonic() - started
    by_name = {t.plugin: t for t in times}
    assert [t.plugin for t in times] == sorted([hangs.name, fine.name, broken.name])
    assert by_name[hangs.name].seconds is None
    assert by_name[hangs.name].error == "still importing after 3 s (stopped at the limit)"
    assert by_name[broken.name] == (broken.name, None, "ValueError: no configuration")
    seconds = by_name[fine.name].seconds
    assert seconds is not None
    assert 0.2 <= seconds < 3
    assert by_name[fine.name].error is None
    assert elapsed < 60
    # The hanging interpreter is gone, and nothing was imported here.
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (tmp_path / "x").exists()
    assert not {hangs.module, fine.module, broken.module} & sys.modules.keys()


def test_import_times_checks_its_arguments(tocsin_plugin_manager_factory: Any) -> None:
    pm: PluginManager = tocsin_plugin_manager_factory()
    with pytest.raises(ValueError, match="positive"):
        import_times(timeout=0, manager=pm)
    with pytest.raises(ValueError, match="not the manager's group"):
        import_times("other.group", manager=pm)
    assert import_times(manager=pm) == []
