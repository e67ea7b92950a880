"""tocsin._declared: receivers declared in entry-point metadata, imported on first use.

The plugins are real distributions built by pip from a pyproject.toml written here, and
installed into a folder of the test's own; the manager discovers them as it would any
installed plugin.  Whether a plugin was imported is read off ``sys.modules``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import textwrap
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tocsin import PluginLoadError, PluginManager, TocsinPluginWarning
from tocsin._declared import DeclarationError, parse_declaration
from tocsin.testing import pip_install

# -- parsing ------------------------------------------------------------------------------


def test_a_declaration_with_every_option() -> None:
    declaration = parse_declaration(
        'acme shop.signals:order_paid sender shop.models:Shop uid "acme paid" priority -5',
        "acme_audit.mail:on_paid",
    )
    assert declaration.plugin == "acme"
    assert declaration.signal == "shop.signals:order_paid"
    assert declaration.receiver == "acme_audit.mail:on_paid"
    assert (declaration.sender, declaration.sender_is_path) == ("shop.models:Shop", True)
    assert (declaration.dispatch_uid, declaration.priority) == ("acme paid", -5)
    assert declaration.module == "acme_audit.mail"


@pytest.mark.parametrize(
    ("sender", "expected"),
    [('"bank"', ("bank", False)), ("42", (42, False)), ("'7'", ("7", False))],
)
def test_senders_by_value(sender: str, expected: tuple[Any, bool]) -> None:
    declaration = parse_declaration(f"p s:sig sender {sender}", "m:f")
    assert (declaration.sender, declaration.sender_is_path) == expected


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("acme", "m:f", "must start with the plugin's name and the signal"),
        ("acme not-a-path", "m:f", "must start with the plugin's name and the signal"),
        ("acme s:sig", "just_a_module", "the value must be the receiver"),
        ("acme s:sig sender", "m:f", "after the signal come"),
        ("acme s:sig colour red", "m:f", "after the signal come"),
        ("acme s:sig priority high", "m:f", "priority must be an integer"),
        ("acme s:sig uid a uid b", "m:f", "'uid' is given twice"),
        ("acme s:sig sender not/a/path", "m:f", "neither an import path"),
        ('acme s:sig uid "unclosed', "m:f", "No closing quotation"),
    ],
)
def test_a_malformed_declaration_says_what_to_write(name: str, value: str, says: str) -> None:
    with pytest.raises(DeclarationError, match=says) as caught:
        parse_declaration(name, value)
    assert name in str(caught.value)


# -- real distributions -------------------------------------------------------------------

#: The application's signals and senders: not the plugin's code.
APP = """
from tocsin import Signal

order_paid = Signal(name="app.order_paid")
user_logged_in = Signal(name="app.user_logged_in")
unrelated = Signal(name="app.unrelated")


class Shop:
    pass


class Bank:
    pass
"""

#: The plugin's receivers; every import of it is counted in a file.
RECEIVERS = """
import pathlib
import time

COUNTER = pathlib.Path({counter!r})
COUNTER.write_text(COUNTER.read_text() + "x")
time.sleep({delay})
{fail}


def on_paid(sender, **kwargs):
    return "declared-paid"


def on_login(sender, **kwargs):
    return "declared-login"
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """site(entry_points, fail=False, delay=0) -> (group, app module, counter file):
    builds and installs the application and a plugin distribution whose pyproject.toml
    declares *entry_points*, each ``{group: {name: value}}`` (``{group}`` in a group
    name is the test's own group)."""
    group = f"tocsin.testdeclared.g{abs(hash(tmp_path)) % 10**8}"
    app = f"decl_app_{abs(hash(tmp_path)) % 10**8}"
    plugin = f"decl_plugin_{abs(hash(tmp_path)) % 10**8}"
    target = tmp_path / "site"
    for variable in [name for name in list(__import__("os").environ) if name.startswith("TOCSIN_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("TOCSIN_CACHE_DIR", str(tmp_path / "cache"))

    def build(
        entry_points: Mapping[str, Mapping[str, str]], *, fail: bool = False, delay: float = 0
    ) -> tuple[str, Any, Path]:
        counter = tmp_path / "imports"
        counter.write_text("")
        projects = []
        for name, modules, points in (
            ("decl-app", {f"{app}.py": APP}, {}),
            (
                "decl-plugin",
                {
                    f"{plugin}/__init__.py": "",
                    f"{plugin}/receivers.py": RECEIVERS.format(
                        counter=str(counter),
                        delay=delay,
                        fail="raise RuntimeError('broken on import')" if fail else "",
                    ),
                },
                entry_points,
            ),
        ):
            project = tmp_path / "src" / name
            (project / "src").mkdir(parents=True)
            tables = "".join(
                f'\n[project.entry-points."{g.format(group=group)}"]\n'
                + "".join(
                    f"{_toml(k.format(app=app))} = {_toml(v.format(app=app, plugin=plugin))}\n"
                    for k, v in table.items()
                )
                for g, table in points.items()
            )
            (project / "pyproject.toml").write_text(
                textwrap.dedent(
                    f"""\
                    [build-system]
                    requires = ["setuptools"]
                    build-backend = "setuptools.build_meta"

                    [project]
                    name = "{name}"
                    version = "1.0"
                    """
                )
                + tables,
                encoding="utf-8",
            )
            for path, source in modules.items():
                file = project / "src" / path
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(textwrap.dedent(source), encoding="utf-8")
            projects.append(project)
        pip_install(projects, target)
        monkeypatch.syspath_prepend(str(target))
        return group, importlib.import_module(app), counter

    build.plugin = plugin  # type: ignore[attr-defined]
    yield build
    for module in [m for m in sys.modules if m.startswith((app, plugin))]:
        del sys.modules[module]


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def manager(group: str, tmp_path: Path, **options: Any) -> PluginManager:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("# no [tool.tocsin]\n", encoding="utf-8")
    return PluginManager(group, pyproject=str(pyproject), **options)


DECLARED = {
    "{group}.receivers": {
        "acme {app}:order_paid sender {app}:Shop uid acme:paid priority 5": (
            "{plugin}.receivers:on_paid"
        ),
        "acme {app}:user_logged_in": "{plugin}.receivers:on_login",
    }
}


def responses(signal: Any, sender: Any) -> list[Any]:
    return [response for _, response in signal.send(sender)]


def test_load_imports_nothing_of_the_plugin_until_a_send_reaches_it(
    site: Any, tmp_path: Path
) -> None:
    group, app, counter = site(DECLARED)
    pm = manager(group, tmp_path)
    assert pm.load() == ["acme"]
    info = pm["acme"]
    assert (info.enabled, info.loaded, info.distribution) == (True, False, "decl-plugin")
    assert len(info.receivers) == 2
    assert all(r.connected for r in info.receivers)
    assert counter.read_text() == ""
    assert f"{site.plugin}.receivers" not in sys.modules

    app.unrelated.send(app.Shop)  # no declaration of the plugin's
    assert responses(app.order_paid, app.Bank) == []  # not the declared sender
    assert counter.read_text() == ""

    assert responses(app.order_paid, app.Shop) == ["declared-paid"]  # imports it
    assert counter.read_text() == "x"
    assert pm["acme"].loaded
    assert responses(app.order_paid, app.Shop) == ["declared-paid"]
    assert responses(app.user_logged_in, None) == ["declared-login"]
    assert counter.read_text() == "x"  # once
    [(receiver, _)] = app.order_paid.send(app.Shop)
    assert receiver.__module__ == f"{site.plugin}.receivers"  # the real one now


def test_the_real_receiver_takes_the_stand_ins_place_and_options(site: Any, tmp_path: Path) -> None:
    group, app, _ = site(DECLARED)
    pm = manager(group, tmp_path)
    pm.load()

    def later(sender: Any, **kwargs: Any) -> str:
        return "connected later, priority 5"

    app.order_paid.connect(later, sender=app.Shop, priority=5)
    assert responses(app.order_paid, app.Shop) == ["declared-paid", "connected later, priority 5"]
    assert responses(app.order_paid, app.Shop) == ["declared-paid", "connected later, priority 5"]

    def duplicate(sender: Any, **kwargs: Any) -> str:
        return "same uid"

    app.order_paid.connect(duplicate, sender=app.Shop, dispatch_uid="acme:paid")  # taken
    assert "same uid" not in responses(app.order_paid, app.Shop)
    pm.disable("acme")
    assert responses(app.order_paid, app.Shop) == ["connected later, priority 5"]
    pm.enable("acme")
    assert responses(app.order_paid, app.Shop) == ["declared-paid", "connected later, priority 5"]


def test_a_disabled_declared_plugin_is_never_imported(
    site: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group, app, counter = site(DECLARED)
    monkeypatch.setenv("TOCSIN_DISABLED_PLUGINS", "acme")
    pm = manager(group, tmp_path)
    assert pm.load() == []
    assert responses(app.order_paid, app.Shop) == []
    assert counter.read_text() == ""
    pm.enable("acme")  # stand-ins again: still not imported
    assert counter.read_text() == ""
    assert responses(app.order_paid, app.Shop) == ["declared-paid"]
    assert counter.read_text() == "x"


def test_a_declared_plugin_disabled_before_its_first_send_is_not_imported(
    site: Any, tmp_path: Path
) -> None:
    group, app, counter = site(DECLARED)
    pm = manager(group, tmp_path)
    pm.load()
    pm.disable("acme")
    assert responses(app.order_paid, app.Shop) == []
    assert counter.read_text() == ""


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_an_import_failing_at_first_send(
    site: Any, tmp_path: Path, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    group, app, counter = site(DECLARED, fail=True)
    pm = manager(group, tmp_path)
    pm.load()
    send = getattr(app.order_paid, method)
    warned = pytest.warns(TocsinPluginWarning, match="failed to import on its first use")
    if method == "send":
        with warned, pytest.raises(PluginLoadError) as caught:
            send(app.Shop)
        error = caught.value
    else:
        with warned, caplog.at_level(logging.ERROR, logger="tocsin.dispatch"):
            [(_, error)] = send(app.Shop)
        assert any("send_robust" in r.getMessage() for r in caplog.records)
    assert isinstance(error, PluginLoadError)
    assert isinstance(error.__cause__, RuntimeError)
    info = pm["acme"]
    assert (info.enabled, info.loaded) == (False, False)
    assert isinstance(info.error, RuntimeError)
    # Disabled: later sends do not try again.
    assert responses(app.order_paid, app.Shop) == []
    assert responses(app.user_logged_in, None) == []
    assert counter.read_text() == "x"


def test_two_threads_sending_at_once_import_once(site: Any, tmp_path: Path) -> None:
    group, app, counter = site(DECLARED, delay=0.3)
    pm = manager(group, tmp_path)
    pm.load()
    results: list[list[Any]] = []
    threads = [
        threading.Thread(target=lambda: results.append(responses(app.order_paid, app.Shop)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [["declared-paid"]] * 4
    assert counter.read_text() == "x"


def test_a_first_send_inside_an_event_loop(site: Any, tmp_path: Path) -> None:
    group, app, counter = site(DECLARED)
    pm = manager(group, tmp_path)
    pm.load()

    async def main() -> list[Any]:
        return [r for _, r in await app.order_paid.asend(app.Shop)]

    assert asyncio.run(main()) == ["declared-paid"]
    assert counter.read_text() == "x"


def test_verify_checks_every_declared_receiver_without_importing(site: Any, tmp_path: Path) -> None:
    broken = {
        "{group}.receivers": {
            "acme {app}:order_paid": "{plugin}.receivers:on_paid",
            "acme {app}:user_logged_in": "{plugin}.receivers:no_such_function",
        },
        "other.group": {},
    }
    group, app, counter = site(broken)
    pm = manager(group, tmp_path)
    with pytest.warns(TocsinPluginWarning, match="no_such_function"):
        assert pm.load(verify=True) == []
    assert isinstance(pm["acme"].error, DeclarationError)
    assert counter.read_text() == ""
    assert responses(app.order_paid, app.Shop) == []


def test_an_unreadable_declaration_fails_its_plugin_at_load(site: Any, tmp_path: Path) -> None:
    group, _, counter = site({"{group}.receivers": {"acme": "{plugin}.receivers:on_paid"}})
    pm = manager(group, tmp_path)
    with pytest.warns(TocsinPluginWarning, match="declares receivers wrongly"):
        assert pm.load() == []
    assert isinstance(pm["acme"].error, DeclarationError)
    assert counter.read_text() == ""


def test_a_signal_that_cannot_be_imported_fails_the_plugin_at_load(
    site: Any, tmp_path: Path
) -> None:
    group, _, counter = site(
        {"{group}.receivers": {"acme no_such_app.signals:x": "{plugin}.receivers:on_paid"}}
    )
    pm = manager(group, tmp_path)
    with pytest.warns(TocsinPluginWarning, match="cannot be imported"):
        assert pm.load() == []
    assert isinstance(pm["acme"].error, ModuleNotFoundError)
    assert counter.read_text() == ""
