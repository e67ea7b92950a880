"""Every public-facing error names what is involved and says what to do.

Each case triggers one ``raise`` of the library (found by grepping core/tocsin) the way
a user would, then checks two things about its message: that it names the signal,
receiver, plugin, setting or value involved (``names``), and that it tells the reader
what to do (``remedy``, a regular expression).  Messages that do not do both yet are
marked ``xfail(strict=True)`` with the reason; fixing the message turns the xfail
into a failure ("XPASS(strict)"), the cue to remove the mark.

Errors about malformed broker messages (``DeferredDecodeError``) are not here: no
user action causes them, and the worker rejects such messages.
"""

from __future__ import annotations

import asyncio
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import tocsin
from tocsin import (
    AsyncReceiversInLoopError,
    PluginConfigError,
    PluginLoadError,
    PluginManager,
    Signal,
    TocsinPluginWarning,
    receiver,
)
from tocsin._settings import resolve_settings
from tocsin.signals import user_login_failed
from tocsin.testing import capture, isolated_signals, override_settings

paid = Signal(providing_args=["order"], name="shop.order_paid")


def good(sender: Any, **kwargs: Any) -> None:
    pass


def other(sender: Any, **kwargs: Any) -> None:
    pass


def no_kwargs(sender: Any) -> None:
    pass


async def async_receiver(sender: Any, **kwargs: Any) -> None:
    pass


class Slotted:
    """A callable that cannot be weakly referenced."""

    __slots__ = ()

    def __call__(self, **kwargs: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "<Slotted receiver>"


@dataclass
class Case:
    raises: Callable[[], object]
    error: type[BaseException]
    names: tuple[str, ...]
    remedy: str
    short: str = ""  # why the message falls short today (an xfail reason)
    needs: tuple[str, ...] = field(default_factory=tuple)  # importable modules required


def _assign_receivers() -> None:
    paid.receivers = [good]


def _send_in_loop() -> None:
    async def main() -> None:
        with paid.connected_to(async_receiver):
            paid.send(None, order=1)

    asyncio.run(main())


def _manager(**options: Any) -> Callable[[], object]:
    return lambda: PluginManager("tocsintest.none", **options).settings()


def _register_twice() -> None:
    manager = PluginManager("tocsintest.none")
    manager.register(Slotted(), name="acme-audit")
    try:
        manager.register(Slotted(), name="acme-audit")
    finally:
        manager.unregister("acme-audit")


def _sqlalchemy_connect(*targets: Any, **options: Any) -> Callable[[], object]:
    def call() -> object:
        from tocsin.contrib.sqlalchemy import connect_signals

        return connect_signals(*targets, **options)

    return call


def _sqlalchemy_session() -> None:
    from sqlalchemy.orm import Session

    from tocsin.contrib.sqlalchemy import connect_signals

    connect_signals(Session())


def _mirror(django_signal: Any) -> Callable[[], object]:
    def call() -> object:
        from tocsin.contrib.django import mirror

        return mirror(django_signal)

    return call


def _relays(names: list[str]) -> Callable[[], object]:
    def call() -> object:
        from tocsin.contrib.django.relay import connect_relays

        return connect_relays(names)

    return call


def celery_receiver(sender: Any, **kwargs: Any) -> None:
    pass


def _deferred(func: Any, **options: Any) -> Callable[[], object]:
    def call() -> object:
        from tocsin.contrib.celery import deferred

        return deferred(func, **options)

    return call


def _retry_policy(**options: Any) -> Callable[[], object]:
    def call() -> object:
        from tocsin.contrib.celery import RetryPolicy

        return RetryPolicy(**options)

    return call


def _deferred_decorated_twice() -> None:
    from tocsin.contrib.celery import deferred

    connected = receiver(paid)(celery_receiver)
    try:
        deferred(connected)
    finally:
        paid.disconnect(celery_receiver)
        del celery_receiver.__tocsin_receivers__  # type: ignore[attr-defined]


def _deferred_unnamed_signal() -> None:
    from tocsin.contrib.celery import connect_deferred

    connect_deferred(Signal(), celery_receiver)


def _deferred_unencodable() -> None:
    from tocsin.contrib.celery import deferred

    deferred(celery_receiver).envelope(paid, None, {"order": object()})


def _celery_pickle() -> None:
    import celery

    from tocsin.contrib.celery import install

    app = celery.Celery("shop-worker", set_as_current=False)
    app.conf.accept_content = ["json", "pickle"]
    install(app, plugins=False)


def _plugin_options(config: Any) -> Callable[[], object]:
    def call() -> object:
        from tocsin.contrib._plugins import plugin_options

        return plugin_options(config, "settings.TOCSIN")

    return call


CASES: dict[str, Case] = {
    # -- Signal ------------------------------------------------------------------------
    "providing_args as a string": Case(
        lambda: Signal(providing_args="order", name="shop.order_paid"),
        TypeError,
        ("'order'",),
        r"write providing_args=\['order'\]",
    ),
    "providing_args not an identifier": Case(
        lambda: Signal(providing_args=["order id"], name="shop.order_paid"),
        TypeError,
        ("'order id'", "shop.order_paid"),
        r"(rename|use|write|such as)",
    ),
    "name not a str": Case(
        lambda: Signal(name=3),  # type: ignore[arg-type]
        TypeError,
        ("int",),
        r"must be a str or None",
    ),
    "weak reference impossible": Case(
        lambda: paid.connect(Slotted()),
        TypeError,
        ("<Slotted receiver>", "shop.order_paid"),
        r"Pass weak=False",
    ),
    "receiver not callable": Case(
        lambda: paid.connect(42),  # type: ignore[call-overload]
        TypeError,
        ("42", "shop.order_paid"),
        r"must be callable",
    ),
    "receiver without **kwargs": Case(
        lambda: paid.connect(no_kwargs),
        ValueError,
        ("no_kwargs", "shop.order_paid"),
        r"add \*\*kwargs",
    ),
    "connect() without a receiver": Case(
        lambda: paid.connect(),
        TypeError,
        ("shop.order_paid",),
        r"missing the receiver",
    ),
    "connect() with receiver and fn": Case(
        lambda: paid.connect(good, fn=other),
        TypeError,
        ("shop.order_paid",),
        r"pass one of them",
    ),
    "disconnect() with receiver and fn": Case(
        lambda: paid.disconnect(good, fn=other),
        TypeError,
        ("shop.order_paid",),
        r"pass one of them",
    ),
    "disconnect() with nothing": Case(
        lambda: paid.disconnect(),
        TypeError,
        ("shop.order_paid",),
        r"needs the receiver to disconnect, or the dispatch_uid",
    ),
    "receivers assigned a non-empty list": Case(
        _assign_receivers,
        TypeError,
        ("shop.order_paid",),
        r"use connect\(\) to add receivers",
    ),
    "send() with async receivers in a loop": Case(
        _send_in_loop,
        AsyncReceiversInLoopError,
        ("shop.order_paid", "async_receiver"),
        r"Use 'await signal\.asend\(sender, \.\.\.\)' instead",
    ),
    "dispatch_uid not hashable": Case(
        lambda: paid.connect(good, dispatch_uid=["mail"]),
        TypeError,
        ("shop.order_paid", "list"),
        r"a str is usual",
    ),
    "priority not an int": Case(
        lambda: paid.connect(good, priority=1.5),  # type: ignore[arg-type]
        TypeError,
        ("shop.order_paid", "float"),
        r"must be an int",
    ),
    "@receiver given a signal's name": Case(
        lambda: receiver("shop.order_paid"),  # type: ignore[arg-type]
        TypeError,
        ("'shop.order_paid'",),
        r"takes a Signal",
    ),
    "@receiver on a function without **kwargs": Case(
        lambda: receiver(paid)(no_kwargs),
        ValueError,
        ("no_kwargs", "shop.order_paid"),
        r"add \*\*kwargs",
    ),
    "Signal.typed given a non-function": Case(
        lambda: Signal.typed(42),  # type: ignore[arg-type]
        TypeError,
        ("42",),
        r"takes a prototype function, such as",
    ),
    "Signal.typed prototype without sender": Case(
        lambda: Signal.typed(lambda order: None),
        TypeError,
        ("<lambda>",),
        r"must take the sender first",
    ),
    "credentials not a mapping": Case(
        lambda: user_login_failed.send("shop.auth", credentials=["ada", "hunter2"]),
        TypeError,
        ("user_login_failed", "list"),
        r"must be a mapping",
    ),
    # -- PluginManager and settings ------------------------------------------------------
    "group empty": Case(
        lambda: PluginManager(""),
        TypeError,
        ("''",),
        r"must be a non-empty str",
    ),
    "unknown plugin": Case(
        lambda: PluginManager("tocsintest.none")["acme-audit"],
        KeyError,
        ("'acme-audit'", "'tocsintest.none'"),
        r"Known plugins: none",
    ),
    "register() given a name": Case(
        lambda: PluginManager("tocsintest.none").register("acme-audit"),
        TypeError,
        ("'acme-audit'",),
        r"to load an installed plugin by name use enable\(\)",
    ),
    "register() with an empty name": Case(
        lambda: PluginManager("tocsintest.none").register(Slotted(), name=""),
        TypeError,
        ("''",),
        r"must be a non-empty str",
    ),
    "register() twice under one name": Case(
        _register_twice,
        ValueError,
        ("'acme-audit'", "'tocsintest.none'"),
        r"unregister it first or pass another name",
    ),
    "autoload argument not a bool": Case(
        _manager(autoload="yes"),
        PluginConfigError,
        ("PluginManager() arguments: autoload", "'yes'"),
        r"must be true or false",
    ),
    "disabled argument a string": Case(
        _manager(disabled="acme-audit"),
        PluginConfigError,
        ("PluginManager() arguments: disabled", "'acme-audit'"),
        r"must be a list of plugin names",
    ),
    "disabled argument with a non-name": Case(
        _manager(disabled=["acme-audit", ""]),
        PluginConfigError,
        ("PluginManager() arguments: disabled", "''"),
        r"must list plugin names",
    ),
    "environment switch not yes/no": Case(
        lambda: resolve_settings(environ={"TOCSIN_STRICT_PLUGINS": "maybe"}),
        PluginConfigError,
        ("TOCSIN_STRICT_PLUGINS", "'maybe'"),
        r"use 1 or 0",
    ),
    # -- tocsin.testing -------------------------------------------------------------------
    "override_settings on a class": Case(
        lambda: override_settings(object, DEBUG=True)(Slotted),
        TypeError,
        ("Slotted",),
        r"use it as a context manager inside the test instead",
    ),
    "capture() of a non-signal": Case(
        lambda: capture("shop.order_paid").__enter__(),  # type: ignore[arg-type]
        TypeError,
        ("'shop.order_paid'",),
        r"takes a tocsin Signal",
    ),
    "isolated_signals() of a non-signal": Case(
        lambda: isolated_signals("shop.order_paid").__enter__(),  # type: ignore[arg-type]
        TypeError,
        ("'shop.order_paid'",),
        r"takes tocsin Signals",
    ),
    # -- integrations -----------------------------------------------------------------------
    "framework TOCSIN setting with an unknown key": Case(
        _plugin_options({"disable": ["acme-audit"]}),
        PluginConfigError,
        ("settings.TOCSIN", "'disable'"),
        r"the known keys are 'autoload', 'disabled', 'plugins', 'strict'",
    ),
    "framework TOCSIN setting not a dict": Case(
        _plugin_options(["acme-audit"]),
        PluginConfigError,
        ("settings.TOCSIN", "['acme-audit']"),
        r"must be a dict with keys",
    ),
    "framework TOCSIN flag not a bool": Case(
        _plugin_options({"strict": "yes"}),
        PluginConfigError,
        ("settings.TOCSIN['strict']", "'yes'"),
        r"must be True or False",
    ),
    "SQLAlchemy: connect_signals() of something else": Case(
        _sqlalchemy_connect(42),
        TypeError,
        ("42",),
        r"connect_signals\(\) takes",
        needs=("sqlalchemy",),
    ),
    "SQLAlchemy: connect_signals() of a session": Case(
        _sqlalchemy_session,
        TypeError,
        ("Session",),
        r"wire the declarative base",
        needs=("sqlalchemy",),
    ),
    "SQLAlchemy: using= without an engine": Case(
        _sqlalchemy_connect(using="primary"),
        TypeError,
        ("using=",),
        r"no Engine was given",
        needs=("sqlalchemy",),
    ),
    "Django: mirror() of a non-signal": Case(
        _mirror(paid),
        TypeError,
        ("Signal",),
        r"takes a django\.dispatch\.Signal",
        needs=("django",),
    ),
    "Django: relaying an unknown signal": Case(
        _relays(["post_saved"]),
        ValueError,
        ("'post_saved'",),
        r"the relayed signals are .*post_save",
        needs=("django",),
    ),
    "Celery: deferring a method": Case(
        _deferred(Slotted.__call__),
        TypeError,
        ("Slotted.__call__",),
        r"Defer a module-level function instead",
        needs=("celery",),
    ),
    "Celery: deferring a callable object": Case(
        _deferred(Slotted()),
        TypeError,
        ("<Slotted receiver>",),
        r"takes a plain function",
        needs=("celery",),
    ),
    "Celery: @deferred above @receiver": Case(
        _deferred_decorated_twice,
        TypeError,
        ("celery_receiver",),
        r"put @deferred\(\.\.\.\) below @receiver\(\.\.\.\)",
        needs=("celery",),
    ),
    "Celery: a deferred receiver on an unnamed signal": Case(
        _deferred_unnamed_signal,
        tocsin.TocsinError,
        ("celery_receiver",),
        r"give it one: Signal\(\.\.\., name=",
        needs=("celery",),
    ),
    "Celery: an argument that cannot travel": Case(
        _deferred_unencodable,
        TypeError,
        ("celery_receiver", "shop.order_paid", "'order'"),
        r"register one with tocsin\.contrib\.celery\.register_codec\(\)",
        needs=("celery",),
    ),
    "Celery: an app that accepts pickle": Case(
        _celery_pickle,
        tocsin.TocsinError,
        ("'shop-worker'", "pickle"),
        r"only work with apps that accept JSON",
        needs=("celery",),
    ),
    "Celery: a negative max_retries": Case(
        _retry_policy(max_retries=-1),
        ValueError,
        ("max_retries", "-1"),
        r"must be None or an int >= 0",
        needs=("celery",),
    ),
    "Celery: a retry option given to deferred()": Case(
        _deferred(celery_receiver, max_retries=5),
        TypeError,
        ("max_retries=5",),
        r"pass retry=RetryPolicy\(max_retries=5\)",
        needs=("celery",),
    ),
}


def _params() -> list[Any]:
    params = []
    for key, case in CASES.items():
        marks = [pytest.mark.xfail(strict=True, reason=case.short)] if case.short else []
        params.append(pytest.param(case, id=key, marks=marks))
    return params


def message_of(error: BaseException) -> str:
    # str(KeyError) is the repr of its message; the message is what users read.
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


@pytest.mark.parametrize("case", _params())
def test_message_names_what_is_involved_and_what_to_do(case: Case) -> None:
    for module in case.needs:
        pytest.importorskip(module)
    with isolated_signals(paid, user_login_failed), pytest.raises(case.error) as caught:
        case.raises()
    message = message_of(caught.value)
    missing = [name for name in case.names if name not in message]
    assert not missing, f"the message does not name {missing}: {message!r}"
    assert re.search(case.remedy, message), f"the message gives no advice: {message!r}"


# -- messages that need a site of real plugins (tests/conftest.py's inproc) ---------------

PLUGIN_REMEDY = r"(fix|uninstall|TOCSIN_DISABLED_PLUGINS|disabled=)"


def test_broken_plugin_message(inproc: Any) -> None:
    manager = inproc.manager(allowed=["broken-raise"])
    with pytest.raises(PluginLoadError) as caught:  # raised, not warned as well
        manager.load(strict=True)
    message = str(caught.value)
    assert caught.value.plugin == "broken-raise"
    for name in ("'broken-raise'", "tt-broken", "RuntimeError", "half way through"):
        assert name in message
    assert re.search(PLUGIN_REMEDY, message), message
    # Where it failed: the plugin's own file and line.
    half = inproc.module("tt_broken").__path__[0] + "/half.py"
    assert f"(at {half}:18)" in message
    # Strict mode stops the start: it says so, and where strict mode came from, rather
    # than that the other plugins are unaffected.
    assert "strict mode is on (load(strict=True))" in message
    assert "unaffected" not in message
    assert "carry on" not in message


def test_broken_plugin_warning_without_strict_mode(inproc: Any) -> None:
    manager = inproc.manager(allowed=["broken-raise"])
    with pytest.warns(TocsinPluginWarning) as caught:
        manager.load()
    [message] = [str(w.message) for w in caught]
    assert message.startswith("Plugin 'broken-raise' from tt-broken failed to import: ")
    assert "It is disabled, and the other plugins carry on." in message
    assert "strict" not in message
    assert caught[0].filename == __file__  # points at the call of load()


def test_strict_mode_names_where_it_was_switched_on(
    inproc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOCSIN_STRICT_PLUGINS", "yes")
    manager = inproc.manager(allowed=["broken-raise"])
    with pytest.raises(PluginLoadError) as caught:
        manager.load()
    assert "strict mode is on (environment TOCSIN_STRICT_PLUGINS)" in str(caught.value)


def test_errors_name_exceptions_by_their_public_paths(inproc: Any) -> None:
    assert PluginLoadError.__module__ == "tocsin"
    shown = traceback.format_exception_only(PluginLoadError, PluginLoadError("boom", None))
    assert shown == ["tocsin.PluginLoadError: boom\n"]
    manager = inproc.manager(allowed=["broken-hook"])  # pluggy's error, from pluggy._manager
    with pytest.raises(PluginLoadError) as caught:
        manager.load(strict=True)
    assert type(caught.value.__cause__).__module__.startswith("pluggy._")
    assert ": pluggy.PluginValidationError: " in str(caught.value)


def test_several_broken_plugins_message(inproc: Any) -> None:
    manager = inproc.manager(allowed=["broken-raise", "broken-missing"])
    with pytest.raises(PluginLoadError) as caught:
        manager.load(strict=True)
    message = str(caught.value)
    assert "strict mode is on" in message
    assert "unaffected" not in message
    for name in ("'broken-missing'", "'broken-raise'", "RuntimeError", "ModuleNotFoundError"):
        assert name in message
    assert re.search(PLUGIN_REMEDY, message), message


def test_unknown_plugin_in_settings_message(inproc: Any) -> None:
    manager = inproc.manager(disabled=["alpah"])
    with pytest.warns(TocsinPluginWarning) as caught:
        manager.load()
    messages = [str(w.message) for w in caught]
    [message] = [m for m in messages if "'alpah'" in m]
    assert "PluginManager() arguments" in message
    assert "Known plugins: " in message
    assert "alpha" in message.split("Known plugins: ")[1]


def test_pyproject_unknown_key_message(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.tocsin]\ndisable = ["acme-audit"]\n', encoding="utf-8")
    with pytest.raises(PluginConfigError) as caught:
        resolve_settings(pyproject=pyproject)
    message = str(caught.value)
    assert str(pyproject) in message
    assert "unknown keys disable" in message
    assert "known keys: autoload, disabled, plugins, state, state_interval, strict" in message


def test_pyproject_wrong_value_message(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.tocsin]\nstrict = "yes"\n', encoding="utf-8")
    with pytest.raises(PluginConfigError) as caught:
        resolve_settings(pyproject=pyproject)
    assert (
        str(caught.value)
        == f"[tool.tocsin] in {pyproject}: strict must be true or false, not 'yes'."
    )


def test_pyproject_invalid_toml_message(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.tocsin\nstrict = true\n", encoding="utf-8")
    with pytest.raises(PluginConfigError) as caught:
        resolve_settings(pyproject=pyproject)
    message = str(caught.value)
    assert str(pyproject) in message
    assert "is not valid TOML" in message
    assert "line 1" in message  # where to look


def test_pyproject_unreadable_message(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "pyproject.toml"
    with pytest.raises(PluginConfigError) as caught:
        resolve_settings(pyproject=missing)
    message = str(caught.value)
    assert str(missing) in message
    assert re.search(r"pyproject=", message), message
