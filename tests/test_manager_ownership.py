"""A plugin owns every connection it makes: ``@receiver`` marks, plain
``signal.connect(...)`` calls while its module imports, and connections its
``tocsin_plugin_enabled`` hook makes (issue 13).  Disable removes exactly those,
enable restores exactly those, and an import that fails half-way leaves none.

Each test builds real plugin distributions with pip (the ``tocsin_plugin_dist``
fixture) and imports them in this process.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

import pytest

from tocsin import PluginLoadError, PluginManager, TocsinPluginWarning
from tocsin.testing import install_plugin_distribution

#: The signals the test plugins connect to, in a module of their own distribution.
SIGNALS = """
from tocsin import Signal

ping = Signal(name="own.ping")
pong = Signal(name="own.pong")


class Shop:
    pass
"""

PLAIN_CONNECT = """
import {signals} as s


def on_ping(sender, **kwargs):
    return "plain-ping"


def on_shop(sender, **kwargs):
    return "plain-shop"


def on_pong(sender, **kwargs):
    return "plain-pong"


s.ping.connect(on_ping)
s.ping.connect(on_shop, sender=s.Shop, dispatch_uid="plain:shop", priority=5)
s.pong.connect(on_pong, sender="bank", weak=False)
"""


@pytest.fixture
def install(tocsin_plugin_dist: Any) -> Any:
    """install(source) -> (PluginDistribution, signals module); {signals} in the
    source is the signals module's name."""

    def build(source: str, **options: Any) -> tuple[Any, Any]:
        signals = f"own_signals_{id(source):x}_{len(options)}"
        dist = tocsin_plugin_dist(
            source.replace("{signals}", signals), modules={signals: SIGNALS}, **options
        )
        return dist, importlib.import_module(signals)

    return build


def answers(signals: Any) -> dict[str, list[Any]]:
    return {
        "ping": [r for _, r in signals.ping.send(None)],
        "ping shop": [r for _, r in signals.ping.send(signals.Shop)],
        "pong bank": [r for _, r in signals.pong.send("bank")],
    }


CONNECTED = {
    "ping": ["plain-ping"],
    "ping shop": ["plain-shop", "plain-ping"],  # priority 5 first
    "pong bank": ["plain-pong"],
}
NOTHING: dict[str, list[Any]] = {"ping": [], "ping shop": [], "pong bank": []}


def test_connect_calls_at_import_are_the_plugins_own(
    install: Any, tocsin_plugin_manager_factory: Any
) -> None:
    dist, signals = install(PLAIN_CONNECT)
    pm: PluginManager = tocsin_plugin_manager_factory()
    assert pm.load() == [dist.name]
    assert answers(signals) == CONNECTED
    info = pm[dist.name]
    owned = {(r.receiver.__name__, r.sender, r.dispatch_uid, r.priority) for r in info.receivers}
    assert owned == {
        ("on_ping", None, None, 0),
        ("on_shop", signals.Shop, "plain:shop", 5),
        ("on_pong", "bank", None, 0),
    }
    assert all(r.connected for r in info.receivers)

    pm.disable(dist.name)
    assert answers(signals) == NOTHING
    assert not any(r.connected for r in pm[dist.name].receivers)
    pm.enable(dist.name)
    assert answers(signals) == CONNECTED  # senders, uid, priority and strength as before
    pm.disable(dist.name)
    pm.enable(dist.name)
    assert answers(signals) == CONNECTED  # not twice


def test_an_import_failing_after_connect_leaves_nothing_connected(
    install: Any, tocsin_plugin_manager_factory: Any
) -> None:
    dist, signals = install(PLAIN_CONNECT + "\nraise RuntimeError('half-way')\n")
    pm: PluginManager = tocsin_plugin_manager_factory()
    with pytest.warns(TocsinPluginWarning, match="half-way"):
        assert pm.load() == []
    assert answers(signals) == NOTHING
    assert isinstance(pm[dist.name].error, RuntimeError)


def test_a_keyboard_interrupt_at_import_rolls_back_and_a_later_enable_connects_once(
    install: Any, tocsin_plugin_manager_factory: Any, tmp_path: Any
) -> None:
    flag = tmp_path / "interrupt"
    flag.write_text("yes")
    source = PLAIN_CONNECT + (
        f"\nimport pathlib\nif pathlib.Path({str(flag)!r}).exists():\n    raise KeyboardInterrupt\n"
    )
    dist, signals = install(source)
    pm: PluginManager = tocsin_plugin_manager_factory()
    with pytest.raises(KeyboardInterrupt):
        pm.load()
    assert answers(signals) == NOTHING
    flag.unlink()
    assert dist.module not in sys.modules  # the failed import took it back
    pm.enable(dist.name)
    assert answers(signals) == CONNECTED


def test_connections_of_another_package_imported_on_the_way_stay(
    install: Any,
    tocsin_plugin_manager_factory: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A library (not a plugin) that connects a receiver when first imported, by the
    # failing plugin: the library finished importing, so its receiver stays.
    library = install_plugin_distribution(
        tmp_path,
        """
        import own_signals_lib as s

        def library_receiver(sender, **kwargs):
            return "library"

        s.ping.connect(library_receiver)
        """,
        group="not.tocsin.plugins",
        modules={"own_signals_lib": SIGNALS},
    )
    monkeypatch.syspath_prepend(str(library.path))
    try:
        dist, _ = install(
            f"import {library.module}\nimport own_signals_lib as s\n"
            "def mine(sender, **kwargs):\n    return 'mine'\n"
            "s.ping.connect(mine)\nraise RuntimeError('after the library')\n"
        )
        signals = importlib.import_module("own_signals_lib")
        pm: PluginManager = tocsin_plugin_manager_factory()
        with pytest.warns(TocsinPluginWarning, match="after the library"):
            pm.load()
        assert [r for _, r in signals.ping.send(None)] == ["library"]
        assert isinstance(pm[dist.name].error, RuntimeError)
    finally:
        for module in (library.module, "own_signals_lib"):
            sys.modules.pop(module, None)


HOOKED = """
import tocsin
import {signals} as s


def made_by_hook(sender, **kwargs):
    return "hooked"


@tocsin.hookimpl
def tocsin_plugin_enabled(manager, name):
    s.ping.connect(made_by_hook, weak=False)
"""


def test_connections_made_by_the_enabled_hook_go_with_the_plugin(
    install: Any, tocsin_plugin_manager_factory: Any
) -> None:
    dist, signals = install(HOOKED)
    pm: PluginManager = tocsin_plugin_manager_factory()
    pm.load()
    assert [r for _, r in signals.ping.send(None)] == ["hooked"]
    pm.disable(dist.name)
    assert signals.ping.send(None) == []
    pm.enable(dist.name)
    assert [r for _, r in signals.ping.send(None)] == ["hooked"]


def test_plugins_importing_in_two_threads_own_only_their_own(
    install: Any, tocsin_plugin_manager_factory: Any
) -> None:
    slow = (
        "import time\nimport {signals} as s\n"
        "def first(sender, **kwargs):\n    return 'first'\n"
        "s.ping.connect(first)\ntime.sleep(0.2)\n"
    )
    dist_a, signals = install(slow)
    pm: PluginManager = tocsin_plugin_manager_factory(autoload=False)
    pm.load()

    def other(sender: Any, **kwargs: Any) -> str:
        return "other thread"

    thread = threading.Thread(target=pm.enable, args=(dist_a.name,))
    thread.start()
    signals.ping.connect(other)  # while the plugin imports, in another thread
    thread.join()
    assert sorted(r for _, r in signals.ping.send(None)) == ["first", "other thread"]
    pm.disable(dist_a.name)
    assert [r for _, r in signals.ping.send(None)] == ["other thread"]


def test_a_failed_registration_after_import_leaves_nothing_connected(
    install: Any, tocsin_plugin_manager_factory: Any
) -> None:
    source = PLAIN_CONNECT + (
        "\nimport tocsin\n@tocsin.hookimpl\ndef tocsin_plugin_enabled(manager, name, surprise):\n"
        "    pass\n"
    )
    dist, signals = install(source)
    pm: PluginManager = tocsin_plugin_manager_factory()
    with pytest.warns(TocsinPluginWarning, match="could not be registered"):
        pm.load()
    assert answers(signals) == NOTHING
    with pytest.raises(PluginLoadError):
        pm.enable(dist.name)
    assert answers(signals) == NOTHING
