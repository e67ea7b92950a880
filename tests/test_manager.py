"""PluginManager and PluginInfo: loading, the mapping, enable/disable, ownership.

The plugins are real distributions built by pip (see plugin_helpers.py), imported for
real in this process (the ``inproc`` fixture puts them on sys.path and forgets their
modules before and after each test) or in a fresh interpreter (``scenario``).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import random
import threading
import types
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tocsin
from plugin_helpers import (
    ALL_NAMES,
    BROKEN_ERRORS,
    BROKEN_NAMES,
    BROKEN_RESPONSES,
    GOOD,
    write_dist_info,
    write_module,
)
from tocsin import (
    OwnedReceiver,
    PluginInfo,
    PluginLoadError,
    PluginManager,
    Signal,
    TocsinPluginWarning,
    receiver,
)

# -- what the test plugins connect, as (signal, sender) probes -> responses ----------

PROBES = [
    ("ping", None),
    ("ping", "Shop"),
    ("ping", "bank"),
    ("ping", "Bank"),
    ("ping", "delta"),
    ("pong", None),
    ("pong", "Bank"),
    ("pong", "bank"),
]


def _sender(host: types.ModuleType, name: str | None) -> Any:
    if name in ("Shop", "Bank"):
        return getattr(host, name)
    if name is None:
        return None
    return "".join(list(name))  # an equal str, not the same object: str senders match by value


def observed(host: types.ModuleType) -> dict[tuple[str, str | None], list[str]]:
    """What every probe answers now, in dispatch order."""
    return {
        (signal, sender): [
            str(response) for _, response in getattr(host, signal).send(_sender(host, sender))
        ]
        for signal, sender in PROBES
    }


def expected(enabled: set[str], bank_owner: str | None) -> dict[tuple[str, str | None], list[str]]:
    """What the probes answer (sorted) with *enabled* plugins, *bank_owner* holding the
    ``shared`` dispatch_uid of ping for sender "bank"."""
    answers: dict[tuple[str, str | None], list[str]] = {probe: [] for probe in PROBES}
    any_ping: list[str] = []
    if "a-first" in enabled:
        any_ping.append("a-first")
    if "alpha" in enabled:
        any_ping.append("alpha-any")
        answers["ping", "Shop"].append("alpha-shop")
        answers["pong", "bank"].append("alpha-bank")
    if "beta" in enabled:
        any_ping.append("beta-ping:main")
        answers["pong", "Bank"].append("beta-pong:main")
    if "delta" in enabled:
        answers["ping", "delta"] += ["delta", "delta-bound"]
    if "gamma" in enabled:
        answers["ping", "Bank"].append("gamma-Bank")
    if bank_owner is not None:
        assert bank_owner in enabled
        answers["ping", "bank"].append(f"{bank_owner}-bank")
    for (signal, _), found in answers.items():
        if signal == "ping":
            found.extend(any_ping)
        found.sort()
    return answers


def sorted_view(found: Mapping[Any, list[str]]) -> dict[Any, list[str]]:
    return {probe: sorted(responses) for probe, responses in found.items()}


def load_quietly(pm: PluginManager) -> list[str]:
    """load(), expecting exactly the warnings about the broken test plugins."""
    with pytest.warns(TocsinPluginWarning) as caught:
        loaded = pm.load()
    messages = [str(w.message) for w in caught]
    assert len(messages) == len(BROKEN_NAMES), messages
    return loaded


# -- loading ---------------------------------------------------------------------------


def test_load_enables_every_working_plugin_in_entry_point_name_order(inproc: Any) -> None:
    pm = inproc.manager()
    with pytest.warns(TocsinPluginWarning) as caught:
        loaded = pm.load()
    assert loaded == GOOD
    assert list(pm) == ALL_NAMES
    imports = [e.removeprefix("import ") for e in inproc.host.events if e.startswith("import ")]
    assert imports == [
        "tt_zz_first",  # a-first: first by entry-point name, last by distribution name
        "tt_alpha.receivers",
        "tt_beta",
        "tt_broken",  # broken-attr imports the package, then tt_broken.fine
        "tt_broken.fine",
        "tt_broken.exits",
        "tt_broken.badhook",
        "tt_broken.hookboom",
        "tt_broken.missing",
        "tt_broken.half",
        "tt_delta",
        "tt_gamma",
    ]
    # One warning per broken plugin, in load order, naming it and its distribution,
    # and pointing at the caller of load().
    assert len(caught) == len(BROKEN_NAMES)
    for warning, name in zip(caught, BROKEN_NAMES, strict=True):
        message = str(warning.message)
        assert f"Plugin {name!r} from tt-broken" in message
        assert BROKEN_ERRORS[name] in message
        assert warning.filename == __file__
    assert {name for name in pm if pm.is_enabled(name)} == set(GOOD)


def test_plugin_info_describes_each_plugin(inproc: Any) -> None:
    pm = inproc.manager(disabled=BROKEN_NAMES)
    pm.load()
    host = inproc.host
    alpha = pm["alpha"]
    assert isinstance(alpha, PluginInfo)
    assert (alpha.name, alpha.distribution, alpha.version) == ("alpha", "tt-alpha", "1.0.0")
    assert (alpha.enabled, alpha.loaded, alpha.error) == (True, True, None)
    assert alpha.entry_point == "tt_alpha.receivers"
    assert alpha.plugin is inproc.module("tt_alpha.receivers")
    module = inproc.module("tt_alpha.receivers")
    assert all(isinstance(r, OwnedReceiver) for r in alpha.receivers)
    assert {
        (r.signal, r.receiver, r.sender, r.dispatch_uid, r.priority) for r in alpha.receivers
    } == {
        (host.ping, module.alpha_any, None, "alpha-any", 0),
        (host.ping, module.alpha_shop, host.Shop, None, 5),
        (host.ping, module.alpha_bank, "bank", "shared", 0),
        (host.pong, module.alpha_bank, "bank", "shared", 0),
    }
    assert all(r.connected for r in alpha.receivers)

    beta = pm["beta"]
    assert (beta.distribution, beta.version, beta.entry_point) == (
        "tt-beta",
        "2.0.0",
        "tt_beta:plugin",
    )
    assert beta.plugin is inproc.module("tt_beta").plugin

    # A plugin disabled by the settings is listed, never imported.
    broken = pm["broken-raise"]
    assert (broken.enabled, broken.loaded, broken.error, broken.receivers) == (
        False,
        False,
        None,
        (),
    )
    assert broken.distribution == "tt-broken"
    assert "tt_broken.half" not in inproc.host.events

    # PluginInfo is a frozen snapshot.
    with pytest.raises(dataclasses.FrozenInstanceError):
        alpha.enabled = False  # type: ignore[misc]
    pm.disable("alpha")
    assert alpha.enabled
    assert not pm["alpha"].enabled
    assert not any(r.connected for r in pm["alpha"].receivers)


def test_the_manager_is_a_read_only_mapping(inproc: Any) -> None:
    pm = inproc.manager(disabled=BROKEN_NAMES)
    assert len(pm) == 0
    assert list(pm) == []
    pm.load()
    assert isinstance(pm, Mapping)
    assert len(pm) == len(ALL_NAMES)
    assert "alpha" in pm
    assert "nope" not in pm
    assert 42 not in pm
    assert pm.get("nope") is None
    assert list(pm.keys()) == ALL_NAMES
    assert [info.name for info in pm.values()] == ALL_NAMES
    assert dict(pm.items())["gamma"].distribution == "tt-gamma"
    with pytest.raises(TypeError):
        pm["alpha"] = pm["alpha"]  # type: ignore[index]
    with pytest.raises(TypeError):
        del pm["alpha"]  # type: ignore[attr-defined]
    assert "5 enabled" in repr(pm)
    assert str(len(ALL_NAMES)) in repr(pm)


def test_a_failing_plugin_is_isolated_kept_warned_and_logged(
    inproc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pm = inproc.manager()
    with caplog.at_level(logging.DEBUG, logger="tocsin"):
        load_quietly(pm)
    for name in BROKEN_NAMES:
        info = pm[name]
        assert not info.enabled
        assert info.loaded == (name == "broken-hookboom")  # only its set-up hook failed
        assert not pm.is_enabled(name)
        assert type(info.error).__name__ == BROKEN_ERRORS[name], (name, info.error)
    assert isinstance(pm["broken-exit"].error, SystemExit)
    assert pm["broken-missing"].error.name == "tt_no_such_module_anywhere"  # type: ignore[union-attr]
    # Warned (load_quietly checks), and logged with the traceback at DEBUG only: a
    # WARNING record would print the failure a second time (issue 13).
    assert not [
        r for r in caplog.records if r.levelno >= logging.WARNING and "failed" in r.getMessage()
    ]
    failures = [
        r for r in caplog.records if r.name == "tocsin.plugins" and r.levelno == logging.DEBUG
    ]
    logged = {name for name in BROKEN_NAMES for r in failures if repr(name) in r.getMessage()}
    assert logged == set(BROKEN_NAMES)
    reported = [r for r in failures if "It is disabled" in r.getMessage()]
    assert len(reported) == len(BROKEN_NAMES)
    assert all(r.exc_info for r in reported)
    # Nothing any broken plugin's import connected is left connected, even the
    # receivers connected before the import raised (a strong one among them).
    responses = {r for found in observed(inproc.host).values() for r in found}
    assert not responses & BROKEN_RESPONSES
    assert sorted_view(observed(inproc.host)) == expected(set(GOOD), "alpha")


def test_strict_load_raises_after_trying_every_plugin(inproc: Any) -> None:
    pm = inproc.manager()
    # The error is the report: no warning besides (pytest turns one into an error).
    with pytest.raises(PluginLoadError) as raised:
        pm.load(strict=True)
    error = raised.value
    assert error.plugin is None
    assert [e.plugin for e in error.errors] == BROKEN_NAMES
    assert [type(e.__cause__).__name__ for e in error.errors] == [
        BROKEN_ERRORS[n] for n in BROKEN_NAMES
    ]
    assert all(n in str(error) for n in BROKEN_NAMES)
    # Every working plugin was still loaded.
    assert {n for n in pm if pm.is_enabled(n)} == set(GOOD)


def test_strict_with_one_failure_raises_that_failure(inproc: Any) -> None:
    pm = inproc.manager(allowed=["alpha", "broken-raise"], strict=True)
    with pytest.raises(PluginLoadError, match="half way through") as raised:
        pm.load()  # not warned as well: the error is the report
    assert raised.value.plugin == "broken-raise"
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert raised.value.__cause__ is pm["broken-raise"].error
    assert pm.is_enabled("alpha")


def test_strict_from_the_environment_and_overridden_by_the_call(
    inproc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOCSIN_STRICT_PLUGINS", "1")
    pm = inproc.manager(allowed=["broken-attr"])
    with pytest.raises(PluginLoadError, match=r"strict mode is on \(environment TOCSIN_STRICT"):
        pm.load()
    pm2 = inproc.manager(allowed=["broken-missing"])
    with pytest.warns(TocsinPluginWarning):
        assert pm2.load(strict=False) == []


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda pm: pm.enable("nope"),
        lambda pm: pm.disable("nope"),
        lambda pm: pm.is_enabled("nope"),
        lambda pm: pm.unregister("nope"),
        lambda pm: pm["nope"],
    ],
    ids=["enable", "disable", "is_enabled", "unregister", "getitem"],
)
def test_an_unknown_name_raises_keyerror_naming_the_known_ones(inproc: Any, call: Any) -> None:
    pm = inproc.manager(allowed=["alpha", "gamma"])
    pm.load()
    with pytest.raises(KeyError) as raised:
        call(pm)
    message = str(raised.value)
    assert "'nope'" in message
    assert all(name in message for name in ALL_NAMES)
    assert inproc.host.events.count("import tt_alpha.receivers") == 1


def test_keyerror_on_an_empty_manager_says_so(inproc: Any) -> None:
    pm = inproc.manager()
    with pytest.raises(KeyError, match="Known plugins: none"):
        pm.enable("alpha")


@pytest.mark.parametrize("name", BROKEN_NAMES)
def test_enabling_a_failing_plugin_raises_its_error_and_changes_nothing(
    inproc: Any, name: str
) -> None:
    pm = inproc.manager(disabled=BROKEN_NAMES)
    pm.load()
    host = inproc.host
    before = observed(host)
    for attempt in range(2):  # and again: a failure leaves nothing behind to trip over
        with pytest.raises(PluginLoadError) as raised:
            pm.enable(name)
        assert raised.value.plugin == name
        assert type(raised.value.__cause__).__name__ == BROKEN_ERRORS[name]
        info = pm[name]
        assert info.error is raised.value.__cause__
        assert not info.enabled
        assert not pm.is_enabled(name)
        assert observed(host) == before, attempt
    assert sorted_view(before) == expected(set(GOOD), "alpha")


def test_a_failed_plugin_that_is_enabled_later_loses_its_error(
    inproc: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error is the last attempt's: once the import works, it is cleared."""
    site = tmp_path / "late"
    write_dist_info(site, "tt-flaky", "1", {"flaky": "tt_flaky"})
    write_module(
        site,
        "tt_flaky",
        """
        import os
        import tocsin
        import tt_host

        @tocsin.receiver(tt_host.ping)
        def flaky(sender, **kwargs):
            return "flaky"

        if os.environ.get("TT_FLAKY_BROKEN"):
            raise OSError("not yet")
        """,
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("TT_FLAKY_BROKEN", "1")
    pm = inproc.manager(allowed=["flaky"])
    with pytest.warns(TocsinPluginWarning, match="not yet"):
        assert pm.load() == []
    assert isinstance(pm["flaky"].error, OSError)
    assert "flaky" not in observed(inproc.host)["ping", None]
    monkeypatch.delenv("TT_FLAKY_BROKEN")
    pm.enable("flaky")
    assert pm["flaky"].error is None
    assert pm["flaky"].loaded
    assert observed(inproc.host)["ping", None] == ["flaky"]


# -- receiver ownership ----------------------------------------------------------------


def test_disable_and_enable_move_exactly_the_plugins_connections(inproc: Any) -> None:
    host = inproc.host

    def app_any(sender: Any, **kwargs: Any) -> str:
        return "app-any"

    def app_shop(sender: Any, **kwargs: Any) -> str:
        return "app-shop"

    host.ping.connect(app_any, priority=3)
    host.ping.connect(app_shop, sender=host.Shop, dispatch_uid="app-shop")
    try:
        pm = inproc.manager(disabled=BROKEN_NAMES)
        pm.load()
        everything = observed(host)
        assert everything["ping", "Shop"] == [
            "alpha-shop",  # priority 5
            "app-any",  # priority 3
            "app-shop",  # then by the order they were connected in
            "a-first",
            "alpha-any",
            "beta-ping:main",  # priority -1
        ]
        pm.disable("alpha")
        assert not pm.is_enabled("alpha")
        without = observed(host)
        expect = expected(set(GOOD) - {"alpha"}, None)
        for probe, found in without.items():
            apps = [r for r in everything[probe] if r.startswith("app-")]
            assert sorted(found) == sorted(expect[probe] + apps), probe
        # The sender filters, dispatch_uids and priorities come back with enable().
        pm.enable("alpha")
        again = observed(host)
        assert sorted_view(again) == sorted_view(everything)
        # Priorities still order them (ties go by connection order, now alpha's last).
        assert again["ping", "Shop"][:2] == ["alpha-shop", "app-any"]
        assert again["ping", "Shop"][-1] == "beta-ping:main"
        assert host.ping.disconnect(dispatch_uid="alpha-any")
        assert host.ping.disconnect(dispatch_uid="app-shop", sender=host.Shop)
    finally:
        host.ping.disconnect(app_any)
        host.ping.disconnect(app_shop, sender=host.Shop, dispatch_uid="app-shop")


def test_a_connection_removed_behind_the_managers_back_is_restored_by_enable(
    inproc: Any,
) -> None:
    pm = inproc.manager(allowed=["alpha"])
    pm.load()
    host = inproc.host
    assert host.ping.disconnect(dispatch_uid="alpha-any")
    assert "alpha-any" not in observed(host)["ping", None]
    pm.disable("alpha")  # its other connections go; the missing one is no error
    assert observed(host) == {probe: [] for probe in PROBES}
    pm.enable("alpha")
    assert sorted_view(observed(host)) == expected({"alpha"}, "alpha")


def test_enable_and_disable_are_idempotent(inproc: Any) -> None:
    pm = inproc.manager(allowed=["alpha", "beta"])
    pm.load()
    host = inproc.host
    pm.enable("alpha")
    pm.enable("alpha")
    assert sorted_view(observed(host)) == expected({"alpha", "beta"}, "alpha")
    pm.disable("beta")
    pm.disable("beta")
    assert sorted_view(observed(host)) == expected({"alpha"}, "alpha")
    assert host.events.count("beta saw disabled beta") == 1


def test_a_class_instance_plugin_connects_bound_methods(inproc: Any) -> None:
    pm = inproc.manager(allowed=["beta"])
    pm.load()
    host = inproc.host
    beta = inproc.module("tt_beta")
    info = pm["beta"]
    methods = [r.receiver for r in info.receivers if isinstance(r.receiver, types.MethodType)]
    assert {m.__func__ for m in methods} == {beta.Tally.on_ping, beta.Tally.on_pong}
    assert all(m.__self__ is beta.plugin for m in methods)
    # The plain functions of the class body are never connected.
    assert beta.Tally.on_ping not in host.ping.receivers
    del methods, info
    gc.collect()  # connected weakly, but the manager keeps the instance alive
    assert [str(r) for _, r in host.ping.send(None)] == ["beta-ping:main"]
    assert [str(r) for _, r in host.pong.send(host.Bank)] == ["beta-pong:main"]
    assert beta.plugin.calls == ["ping", "pong"]
    # A second instance, registered by hand, is a plugin of its own; its on_pong
    # asks for the dispatch_uid the first instance holds, so it is not connected.
    second = beta.Tally("second")
    name = pm.register(second, name="beta-2")
    assert name == "beta-2"
    assert sorted(str(r) for _, r in host.ping.send(None)) == ["beta-ping:main", "beta-ping:second"]
    assert [str(r) for _, r in host.pong.send(host.Bank)] == ["beta-pong:main"]
    assert [r.connected for r in pm["beta-2"].receivers if r.dispatch_uid == "beta-pong"] == [False]
    assert beta.plugin.calls == ["ping", "pong", "ping", "pong"]
    pm.disable("beta")
    assert [str(r) for _, r in host.ping.send(None)] == ["beta-ping:second"]
    assert host.pong.send(host.Bank) == []
    assert beta.plugin.calls == ["ping", "pong", "ping", "pong"]
    assert second.calls == ["ping", "ping"]


def test_a_module_plugin_does_not_connect_the_methods_of_its_classes(inproc: Any) -> None:
    pm = inproc.manager(allowed=["delta"])
    pm.load()
    host = inproc.host
    delta = inproc.module("tt_delta")
    assert sorted(r.receiver.__name__ for r in pm["delta"].receivers) == ["delta_ping", "on_delta"]
    assert [r.receiver for r in pm["delta"].receivers if r.receiver.__name__ == "on_delta"] == [
        delta.on_delta
    ]
    assert host.ping.send(None) == []  # Helper.on_ping would raise TypeError: no self
    assert sorted(r for _, r in host.ping.send("delta")) == ["delta", "delta-bound"]
    pm.disable("delta")
    assert host.ping.send("delta") == []


def test_a_receiver_the_plugin_imports_from_elsewhere_is_not_its_own(
    inproc: Any, new_module: Any
) -> None:
    host = inproc.host
    library = new_module(
        "library",
        """
        import tocsin
        import tt_host

        @tocsin.receiver(tt_host.pong)
        def library_receiver(sender, **kwargs):
            return "library"
        """,
    )
    plugin = new_module(
        "plugin",
        f"""
        import tocsin
        import tt_host
        from {library.__name__} import library_receiver

        @tocsin.receiver(tt_host.pong)
        def own(sender, **kwargs):
            return "own"
        """,
    )
    pm = inproc.manager()
    name = pm.register(plugin)
    assert name == plugin.__name__
    assert [r.receiver for r in pm[name].receivers] == [plugin.own]
    pm.disable(name)
    assert [r for _, r in host.pong.send(None)] == ["library"]
    pm.enable(name)
    assert sorted(r for _, r in host.pong.send(None)) == ["library", "own"]
    pm.unregister(name)
    assert [r for _, r in host.pong.send(None)] == ["library"]
    host.pong.disconnect(library.library_receiver)


def test_dispatch_uid_and_sender_filters_hold_across_plugins_as_in_core(
    inproc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    host = inproc.host
    pm = inproc.manager(allowed=["alpha", "gamma"])
    with caplog.at_level(logging.WARNING, logger="tocsin.plugins"):
        pm.load()
    # alpha loads first (by name) and takes dispatch_uid "shared" for sender "bank".
    found = observed(host)
    assert found["ping", "bank"] == ["alpha-any", "alpha-bank"]
    assert found["ping", "Bank"] == ["alpha-any", "gamma-Bank"]  # by identity, not by name
    assert found["ping", "Shop"] == ["alpha-shop", "alpha-any"]
    taken = [r for r in pm["gamma"].receivers if r.dispatch_uid == "shared"]
    assert [r.connected for r in taken] == [False]
    assert any("'shared' is already taken" in r.getMessage() for r in caplog.records)

    # The same in core: the first connection of a dispatch_uid wins, and disconnecting
    # it does not hand the uid to a receiver that was refused earlier.
    core = Signal()
    core.connect(lambda sender, **kw: "first", sender="bank", dispatch_uid="shared", weak=False)
    core.connect(lambda sender, **kw: "second", sender="bank", dispatch_uid="shared", weak=False)
    assert [r for _, r in core.send("bank")] == ["first"]
    core.disconnect(sender="bank", dispatch_uid="shared")
    assert core.send("bank") == []

    pm.disable("alpha")
    assert observed(host)["ping", "bank"] == []
    pm.disable("gamma")
    pm.enable("gamma")  # now the uid is free: gamma takes it
    assert observed(host)["ping", "bank"] == ["gamma-bank"]
    pm.enable("alpha")  # and alpha is refused it for ping (pong's is alpha's alone)
    assert sorted_view(observed(host)) == expected({"alpha", "gamma"}, "gamma")
    connected = {(r.signal.name, r.connected) for r in pm["alpha"].receivers if r.dispatch_uid}
    assert connected == {("tt.ping", True), ("tt.ping", False), ("tt.pong", True)}


# -- register and unregister -----------------------------------------------------------


def test_register_an_instance_by_hand(inproc: Any) -> None:
    host = inproc.host

    class Recorder:
        def __init__(self) -> None:
            self.seen: list[Any] = []

        @receiver(host.ping, sender=host.Shop)
        def on_ping(self, sender: Any, **kwargs: Any) -> str:
            self.seen.append(sender)
            return "recorder"

    pm = inproc.manager()
    recorder = Recorder()
    name = pm.register(recorder)
    assert name == Recorder.__qualname__
    info = pm[name]
    assert (info.enabled, info.loaded, info.plugin) == (True, True, recorder)
    assert (info.distribution, info.version, info.entry_point, info.error) == (None,) * 4
    assert [r for _, r in host.ping.send(host.Shop)] == ["recorder"]
    assert host.ping.send(host.Bank) == []
    pm.disable(name)
    assert host.ping.send(host.Shop) == []
    pm.enable(name)
    assert [r for _, r in host.ping.send(host.Shop)] == ["recorder"]
    pm.unregister(name)
    assert name not in pm
    assert host.ping.send(host.Shop) == []
    assert recorder.seen == [host.Shop, host.Shop]
    # The name is free again.
    assert pm.register(recorder, name=name) == name
    assert [r for _, r in host.ping.send(host.Shop)] == ["recorder"]


def test_register_rejects_bad_input(inproc: Any, new_module: Any) -> None:
    pm = inproc.manager()
    for bad in (None, "alpha", b"alpha", 3, 1.5):
        with pytest.raises(TypeError, match="register"):
            pm.register(bad)
    module = new_module("plain", "X = 1\n")
    with pytest.raises(TypeError, match="non-empty str"):
        pm.register(module, name="")
    pm.register(module, name="plain")
    with pytest.raises(ValueError, match="already registered"):
        pm.register(types.SimpleNamespace(), name="plain")
    assert pm["plain"].plugin is module
    # The same object under a second name is refused by pluggy; nothing changes.
    with pytest.raises(PluginLoadError):
        pm.register(module, name="plain-again")
    assert list(pm) == ["plain"]


def test_unregistered_plugins_stay_forgotten_until_registered_again(inproc: Any) -> None:
    pm = inproc.manager(allowed=["alpha", "gamma"])
    pm.load()
    host = inproc.host
    module = pm["alpha"].plugin
    pm.unregister("alpha")
    assert "alpha" not in pm
    assert sorted_view(observed(host)) == expected({"gamma"}, None)
    assert host.events[-1] == "alpha saw disabled alpha"
    assert pm.load() == []  # not found again by a later load() in this process
    assert "alpha" not in pm
    assert pm.register(module, name="alpha") == "alpha"
    info = pm["alpha"]
    assert (info.enabled, info.distribution, info.entry_point) == (True, None, None)
    # gamma was refused dispatch_uid "shared" while alpha held it; it stays refused.
    assert sorted_view(observed(host)) == expected({"alpha", "gamma"}, "alpha")
    assert host.events.count("import tt_alpha.receivers") == 1


def test_unregister_a_plugin_that_was_never_imported(inproc: Any) -> None:
    pm = inproc.manager(allowed=[])
    pm.load()
    pm.unregister("alpha")
    assert "alpha" not in pm
    assert "import tt_alpha.receivers" not in inproc.host.events


# -- load() again ------------------------------------------------------------------------


def test_load_again_loads_only_what_is_new(
    inproc: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pm = inproc.manager(disabled=["alpha", *BROKEN_NAMES])
    assert pm.load() == ["a-first", "beta", "delta", "gamma"]
    events = list(inproc.host.events)
    late = tmp_path / "late"
    write_dist_info(late, "tt-late", "1.0", {"late": "tt_late", "b-late": "tt_late:extra_plugin"})
    write_module(
        late,
        "tt_late",
        """
        import tocsin
        import tt_host

        tt_host.note("import tt_late")

        @tocsin.receiver(tt_host.pong, sender="late")
        def late(sender, **kwargs):
            return "late"

        class Extra:
            @tocsin.receiver(tt_host.pong, sender="late")
            def extra(self, sender, **kwargs):
                return "extra"

        extra_plugin = Extra()
        """,
    )
    monkeypatch.syspath_prepend(str(late))
    assert pm.load() == ["b-late", "late"]
    new_events = inproc.host.events[len(events) :]
    assert [e for e in new_events if e.startswith("import")] == ["import tt_late"]
    assert list(pm)[-2:] == ["b-late", "late"]
    assert not pm.is_enabled("alpha")  # not reconsidered
    assert sorted(r for _, r in inproc.host.pong.send("late")) == ["extra", "late"]
    assert pm.load() == []


# -- lifecycle hooks -------------------------------------------------------------------


def test_lifecycle_hooks_are_called_on_every_enabled_plugin(inproc: Any) -> None:
    pm = inproc.manager(allowed=["alpha", "beta", "gamma"])
    pm.load()
    host = inproc.host
    seen = [e for e in host.events if " saw " in e]
    assert seen.count("alpha saw enabled alpha") == 1  # the enabled plugin itself
    assert sorted(seen) == sorted(
        [
            "alpha saw enabled alpha",
            "alpha saw enabled beta",
            "beta saw enabled beta",
            "alpha saw enabled gamma",
            "beta saw enabled gamma",
        ]
    )
    del host.events[:]
    pm.disable("beta")
    assert sorted(host.events) == ["alpha saw disabled beta", "beta saw disabled beta"]
    del host.events[:]
    pm.disable("gamma")
    pm.enable("gamma")
    assert host.events == ["alpha saw disabled gamma", "alpha saw enabled gamma"]
    del host.events[:]
    pm.enable("beta")
    assert sorted(host.events) == ["alpha saw enabled beta", "beta saw enabled beta"]


def test_hooks_get_the_manager_and_run_while_receivers_are_connected(inproc: Any) -> None:
    host = inproc.host
    calls: list[tuple[str, Any, str, list[Any]]] = []

    class Watcher:
        @tocsin.hookimpl
        def tocsin_plugin_enabled(self, manager: PluginManager, name: str) -> None:
            calls.append(("enabled", manager, name, [r for _, r in host.ping.send(None)]))

        @tocsin.hookimpl
        def tocsin_plugin_disabled(self, manager: PluginManager, name: str) -> None:
            calls.append(("disabled", manager, name, [r for _, r in host.ping.send(None)]))

    pm = inproc.manager(allowed=["a-first"])
    pm.register(Watcher(), name="watcher")
    pm.load()
    pm.disable("a-first")
    pm.unregister("watcher")
    assert calls == [
        ("enabled", pm, "watcher", []),
        ("enabled", pm, "a-first", ["a-first"]),
        ("disabled", pm, "a-first", ["a-first"]),
        ("disabled", pm, "watcher", []),
    ]


def test_a_plugin_whose_enabled_hook_raises_is_isolated(inproc: Any) -> None:
    """broken-hookboom's own tocsin_plugin_enabled raises: it is a failed plugin."""
    pm = inproc.manager(allowed=["alpha", "broken-hookboom", "gamma"])
    with pytest.warns(TocsinPluginWarning, match="broken-hookboom"):
        assert pm.load() == ["alpha", "gamma"]
    assert isinstance(pm["broken-hookboom"].error, LookupError)
    assert not pm.is_enabled("broken-hookboom")
    assert sorted_view(observed(inproc.host)) == expected({"alpha", "gamma"}, "alpha")
    with pytest.raises(PluginLoadError, match="cannot set up"):
        pm.enable("broken-hookboom")
    assert sorted_view(observed(inproc.host)) == expected({"alpha", "gamma"}, "alpha")
    # Its hooks are not left registered: enabling another plugin does not raise.
    pm.disable("gamma")
    pm.enable("gamma")


def test_a_disabled_hook_that_raises_does_not_stop_the_disable(
    inproc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    host = inproc.host

    class Grumpy:
        @receiver(host.pong)
        def on_pong(self, sender: Any, **kwargs: Any) -> str:
            return "grumpy"

        @tocsin.hookimpl
        def tocsin_plugin_disabled(self, manager: PluginManager, name: str) -> None:
            raise RuntimeError(f"will not let {name} go")

    pm = inproc.manager()
    pm.register(Grumpy(), name="grumpy")
    with caplog.at_level(logging.ERROR, logger="tocsin.plugins"):
        pm.disable("grumpy")
    assert not pm.is_enabled("grumpy")
    assert host.pong.send(None) == []
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "disabling plugin 'grumpy'" in record.getMessage()
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "will not let grumpy go"
    pm.enable("grumpy")
    assert [r for _, r in host.pong.send(None)] == ["grumpy"]
    with caplog.at_level(logging.ERROR, logger="tocsin.plugins"):
        pm.unregister("grumpy")
    assert "grumpy" not in pm
    assert host.pong.send(None) == []


# -- any order, any thread ---------------------------------------------------------------


class Model:
    """What the plugins' connections should be, given the calls made so far."""

    def __init__(self, pm: PluginManager, objects: dict[str, object]) -> None:
        """Bring *pm* to a known state: every plugin present and enabled, in name order
        (so alpha, enabled before gamma, holds dispatch_uid "shared")."""
        self.objects = objects
        for name in GOOD:
            if name not in pm:
                pm.register(objects[name], name=name)
            pm.disable(name)
        for name in GOOD:
            pm.enable(name)
        self.present = set(GOOD)
        self.enabled = set(GOOD)
        self.bank_owner: str | None = "alpha"

    def apply(self, pm: PluginManager, op: str, name: str) -> None:
        if op in ("enable", "disable", "unregister") and name not in self.present:
            with pytest.raises(KeyError):
                getattr(pm, op)(name)
            return
        if op == "register" and name in self.present:
            with pytest.raises(ValueError, match="already registered"):
                pm.register(self.objects[name], name=name)
            return
        if op == "enable":
            pm.enable(name)
            if name not in self.enabled:  # enabling an enabled plugin changes nothing
                self._enabled(name)
        elif op == "disable":
            pm.disable(name)
            self._disabled(name)
        elif op == "unregister":
            pm.unregister(name)
            self._disabled(name)
            self.present.discard(name)
        else:
            assert pm.register(self.objects[name], name=name) == name
            self.present.add(name)
            self._enabled(name)

    def _enabled(self, name: str) -> None:
        self.enabled.add(name)
        if self.bank_owner is None and name in ("alpha", "gamma"):
            self.bank_owner = name

    def _disabled(self, name: str) -> None:
        self.enabled.discard(name)
        if self.bank_owner == name:
            self.bank_owner = None

    def check(self, pm: PluginManager, host: types.ModuleType) -> None:
        assert set(pm) - set(BROKEN_NAMES) == self.present
        assert {n for n in self.present if pm.is_enabled(n)} == self.enabled
        assert sorted_view(observed(host)) == expected(self.enabled, self.bank_owner)


OPS = st.tuples(
    st.sampled_from(["enable", "disable", "unregister", "register"]), st.sampled_from(GOOD)
)


def test_any_order_of_enable_disable_unregister_keeps_exactly_the_right_connections(
    inproc: Any,
) -> None:
    pm = inproc.manager(disabled=["gamma", *BROKEN_NAMES])
    pm.load()
    pm.enable("gamma")
    objects = {name: pm[name].plugin for name in GOOD}
    host = inproc.host

    @settings(max_examples=80, deadline=None, database=None)
    @given(st.lists(OPS, max_size=20))
    def run(ops: list[tuple[str, str]]) -> None:
        model = Model(pm, objects)  # each example starts from the same state
        model.check(pm, host)
        for op, name in ops:
            model.apply(pm, op, name)
            model.check(pm, host)

    run()


def test_enable_disable_unregister_from_many_threads(inproc: Any) -> None:
    pm = inproc.manager(disabled=BROKEN_NAMES)
    pm.load()
    host = inproc.host
    objects = {name: pm[name].plugin for name in GOOD}
    stop = threading.Event()
    errors: list[BaseException] = []

    def toggler(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(150):
                name = rng.choice(["alpha", "beta", "gamma", "delta"])
                if rng.random() < 0.5:
                    pm.enable(name)
                else:
                    pm.disable(name)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def churner() -> None:
        try:
            for _ in range(60):
                pm.unregister("a-first")
                pm.register(objects["a-first"], name="a-first")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def sender() -> None:
        try:
            while not stop.is_set():
                for signal, who in PROBES:
                    getattr(host, signal).send(_sender(host, who))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=toggler, args=(seed,)) for seed in range(6)]
    threads.append(threading.Thread(target=churner))
    sending = threading.Thread(target=sender)
    sending.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    sending.join()
    assert errors == []

    # Whatever the interleaving, the connections match the final switches exactly.
    enabled = {n for n in GOOD if pm.is_enabled(n)}
    found = observed(host)
    bank = found["ping", "bank"]
    owners = [r.removesuffix("-bank") for r in bank if r.endswith("-bank")]
    assert len(owners) <= 1
    assert sorted_view(found) == expected(enabled, owners[0] if owners else None)
    for name in GOOD:
        assert all(
            r.connected == (name in enabled) for r in pm[name].receivers if not r.dispatch_uid
        )

    for name in GOOD:
        pm.disable(name)
    assert observed(host) == {probe: [] for probe in PROBES}
    for name in ["alpha", "gamma", "a-first", "beta", "delta"]:
        pm.enable(name)
    assert sorted_view(observed(host)) == expected(set(GOOD), "alpha")


# -- the process-wide manager, and a full run in a fresh interpreter -------------------


def test_the_process_wide_manager(scenario: Any) -> None:
    result = scenario(
        """
        first = tocsin.plugins
        out["same"] = first is tocsin.plugins
        out["type"] = type(first).__name__
        out["group"] = first.group
        out["len"] = len(first)  # nothing loaded until load() is called
        """
    )
    assert result["same"]
    assert result["type"] == "PluginManager"
    assert result["group"] == "tocsin.plugins"
    assert result["len"] == 0
    assert result["imported"] == []


def test_a_full_load_in_a_fresh_interpreter(scenario: Any) -> None:
    result = scenario(
        """
        import tt_host
        pm = PluginManager(GROUP)
        out["loaded"] = pm.load()
        out["state"] = state(pm)
        out["ping"] = fired(tt_host.ping)
        out["pong"] = fired(tt_host.pong, tt_host.Bank)
        out["events"] = [e for e in tt_host.events if e.startswith("import")]
        """
    )
    assert result["loaded"] == GOOD
    assert list(result["state"]) == ALL_NAMES
    for name in BROKEN_NAMES:
        assert result["state"][name]["error"] == BROKEN_ERRORS[name]
        assert not result["state"][name]["enabled"]
    assert result["state"]["beta"]["distribution"] == "tt-beta"
    assert result["state"]["beta"]["version"] == "2.0.0"
    assert result["ping"] == ["a-first", "alpha-any", "beta-ping:main"]
    assert result["pong"] == ["beta-pong:main"]
    assert len(result["warnings"]) == len(BROKEN_NAMES)
    logged = [w for w in result["logs"] if w[1] == "DEBUG" and "It is disabled" in w[2]]
    assert len(logged) == len(BROKEN_NAMES)
    assert all(w[3] for w in logged)  # logged with the traceback, at DEBUG (warned once)
    assert result["other_warnings"] == []
