"""The pytest plugin: fixtures and a marker for testing code that uses tocsin.

pytest loads it by itself once tocsin is installed (entry point ``tocsin`` in the
``pytest11`` group).  With ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, load it with
``-p tocsin``, or with ``pytest_plugins = ["tocsin.pytest_plugin"]`` in the rootdir
``conftest.py``.

Fixtures:

``signal_capture``
    ``signal_capture(signal, sender=None)`` starts a :func:`tocsin.testing.capture`
    that lasts until the end of the test and returns its
    :class:`~tocsin.testing.Captured`.
``mute_signals``
    ``mute_signals(signal, ...)`` mutes signals (:meth:`tocsin.Signal.muted`) until
    the end of the test.
``tocsin_plugin_manager``
    an isolated :class:`tocsin.PluginManager`: on an entry-point group of its own
    (:func:`tocsin_plugin_group`), with every ``TOCSIN_*`` environment variable
    removed, ``TOCSIN_CACHE_DIR`` in a temporary directory and no ``[tool.tocsin]``
    settings.  Afterwards its plugins are unregistered and every signal's connections
    are put back as they were before the test (:func:`tocsin.testing.isolated_signals`),
    so no receiver outlives the test.
``tocsin_plugin_manager_factory``
    ``tocsin_plugin_manager_factory(**options)`` makes more such managers, with
    ``PluginManager`` options (``disabled=``, ``allowed=``, ``strict=``...).
``tocsin_plugin_dist``
    ``tocsin_plugin_dist(source, name=None, ...)`` builds a real plugin distribution
    whose entry point is in the test's group (so the managers above find it), installs
    it with pip into a temporary directory, puts that on ``sys.path`` and returns a
    :class:`~tocsin.testing.PluginDistribution` (``.name`` is the plugin's name).
    Afterwards it leaves ``sys.path`` and its modules leave ``sys.modules``.
``tocsin_plugin_group``
    the entry-point group name unique to the test.

Marker:

``@pytest.mark.tocsin_mute(signal, ...)``
    mutes the signals for the test's setup, call and teardown.  A signal is given as
    the object or as its import path (``"myapp.signals:order_paid"`` or
    ``"myapp.signals.order_paid"``).
"""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tocsin._manager import PluginManager
    from tocsin._signal import Signal
    from tocsin.testing import Captured, PluginDistribution

__all__ = [
    "mute_signals",
    "pytest_configure",
    "signal_capture",
    "tocsin_plugin_dist",
    "tocsin_plugin_group",
    "tocsin_plugin_manager",
    "tocsin_plugin_manager_factory",
]

MUTE_MARKER = "tocsin_mute"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MUTE_MARKER}(*signals): mute these tocsin signals (objects, or import paths "
        f"like 'myapp.signals:order_paid') during the test's setup, call and teardown.",
    )


@pytest.fixture
def signal_capture() -> Iterator[Callable[..., Captured]]:
    """``signal_capture(signal, sender=None)``: record the signal's sends until the end of
    the test; returns the :class:`~tocsin.testing.Captured`."""
    from tocsin.testing import capture

    with ExitStack() as stack:

        def start(signal: Signal, sender: Any = None) -> Captured:
            return stack.enter_context(capture(signal, sender))

        yield start


@pytest.fixture
def mute_signals() -> Iterator[Callable[..., None]]:
    """``mute_signals(signal, ...)``: mute the signals until the end of the test."""
    with ExitStack() as stack:

        def mute(*signals: Signal | str) -> None:
            for signal in signals:
                stack.enter_context(_resolve_signal(signal, "mute_signals()").muted())

        yield mute


@pytest.fixture(autouse=True)
def _tocsin_mute_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    """Mute the signals a ``tocsin_mute`` marker names (autouse, so setup is muted too)."""
    markers = list(request.node.iter_markers(MUTE_MARKER))
    if not markers:
        yield
        return
    where = f"@pytest.mark.{MUTE_MARKER} on {request.node.nodeid}"
    signals: list[Signal] = []
    for marker in markers:
        if not marker.args:
            pytest.fail(
                f"{where} names no signal; pass the signals to mute, e.g. "
                f"@pytest.mark.{MUTE_MARKER}(post_save, 'myapp.signals:order_paid').",
                pytrace=False,
            )
        try:
            signals += [_resolve_signal(signal, where) for signal in marker.args]
        except TypeError as error:
            pytest.fail(str(error), pytrace=False)
    with ExitStack() as stack:
        for signal in signals:
            stack.enter_context(signal.muted())
        yield


@pytest.fixture
def tocsin_plugin_group() -> str:
    """An entry-point group name unique to this test."""
    return f"tocsin.testplugins.g{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tocsin_plugin_manager_factory(
    tocsin_plugin_group: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., PluginManager]]:
    """``tocsin_plugin_manager_factory(**options)``: isolated plugin managers (see
    ``tocsin_plugin_manager``), each with these ``PluginManager`` options."""
    from tocsin._manager import PluginManager
    from tocsin.testing import isolated_signals

    for variable in [name for name in os.environ if name.startswith("TOCSIN_")]:
        monkeypatch.delenv(variable)
    base = tmp_path_factory.mktemp("tocsin-manager")
    monkeypatch.setenv("TOCSIN_CACHE_DIR", str(base / "cache"))
    # Settings come from the test only, never from a [tool.tocsin] table of the
    # project under test (found from the working directory upwards otherwise).
    pyproject = base / "pyproject.toml"
    pyproject.write_text("# an empty project: no [tool.tocsin] table\n", encoding="utf-8")
    managers: list[PluginManager] = []

    def make(**options: Any) -> PluginManager:
        options.setdefault("pyproject", str(pyproject))
        manager = PluginManager(tocsin_plugin_group, **options)
        managers.append(manager)
        return manager

    with isolated_signals():
        try:
            yield make
        finally:
            for manager in managers:
                for name in list(manager):
                    manager.unregister(name)


@pytest.fixture
def tocsin_plugin_manager(
    tocsin_plugin_manager_factory: Callable[..., PluginManager],
) -> PluginManager:
    """An isolated :class:`tocsin.PluginManager` for the test's own entry-point group."""
    return tocsin_plugin_manager_factory()


@pytest.fixture
def tocsin_plugin_dist(
    tocsin_plugin_group: str,
    tocsin_plugin_manager_factory: Callable[..., PluginManager],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., PluginDistribution]]:
    """``tocsin_plugin_dist(source, name=None, ...)``: build and install a throwaway
    plugin distribution in the test's group; see
    :func:`tocsin.testing.install_plugin_distribution` for the arguments."""
    from tocsin.testing import install_plugin_distribution

    installed: list[PluginDistribution] = []

    def install(source: str, **options: Any) -> PluginDistribution:
        if "group" in options:
            raise TypeError(
                "tocsin_plugin_dist() installs into the test's own group "
                "(the tocsin_plugin_group fixture); it takes no group=."
            )
        directory = tmp_path_factory.mktemp("tocsin-plugin-dist")
        dist = install_plugin_distribution(directory, source, group=tocsin_plugin_group, **options)
        monkeypatch.syspath_prepend(str(dist.path))
        installed.append(dist)
        return dist

    try:
        yield install
    finally:
        for dist in installed:
            for module in dist.modules:
                for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
                    del sys.modules[loaded]
        importlib.invalidate_caches()


def _resolve_signal(signal: object, where: str) -> Signal:
    from tocsin._signal import Signal

    if isinstance(signal, str):
        path = signal
        module_name, _, attribute = path.partition(":")
        if not attribute:
            module_name, _, attribute = path.rpartition(".")
        try:
            signal = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError) as error:
            raise TypeError(
                f"{where}: cannot import the signal {path!r} ({error}); name it as "
                f"'package.module:attribute' or pass the Signal itself."
            ) from None
    if not isinstance(signal, Signal):
        raise TypeError(
            f"{where}: {signal!r} is not a tocsin Signal; pass Signal objects or their "
            f"import paths."
        )
    return signal
