"""tocsin.state in one process: precedence, the audit trail, what the CLI reads, and a
backend that cannot be reached (on SQLite files; Redis and PostgreSQL have their own
modules and the multi-process tests)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import state_harness

import tocsin
import tocsin.state
from tocsin import PluginManager
from tocsin.state import SharedState, SharedStateError


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return state_harness.build_site(tmp_path_factory.mktemp("state-plugins"))


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, site: Path, tmp_path: Path) -> Iterator[None]:
    for variable in list(os.environ):
        if variable.startswith("TOCSIN_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("TOCSIN_NO_CACHE", "1")
    monkeypatch.setenv("STATE_TEST_OUT", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no pyproject.toml above: [tool.tocsin] sets nothing
    monkeypatch.syspath_prepend(str(site))
    yield
    for state in [*tocsin.state._attached, *_opened]:
        state.close()
    _opened.clear()
    while _managers:  # leave no plugin receiver connected to the catalogue's signals
        pm = _managers.pop()
        for name in list(pm):
            pm.unregister(name)


_managers: list[PluginManager] = []
#: States a test opened by hand, closed after it (Python 3.13 warns of an unclosed
#: SQLite connection).
_opened: list[SharedState] = []


def opened(state: SharedState) -> SharedState:
    _opened.append(state)
    return state


def manager(**options: object) -> PluginManager:
    pm = PluginManager(state_harness.GROUP, use_cache=False, **options)  # type: ignore[arg-type]
    _managers.append(pm)
    return pm


def enabled(pm: PluginManager) -> dict[str, bool]:
    return {name: pm.is_enabled(name) for name in pm}


def test_without_a_shared_state_nothing_changes(tmp_path: Path) -> None:
    pm = manager()
    pm.load()
    assert pm.shared_state is None
    assert enabled(pm) == {"noisy": True, "quiet": True, "reporter": True}
    tocsin.state.check()  # nothing attached: nothing to do
    with pytest.raises(SharedStateError, match="TOCSIN_STATE"):
        tocsin.state.set_plugin_state("noisy", False)
    report = tocsin.state.read_shared_state(pm)
    assert report.backend is None
    assert report["noisy"].shared is None
    assert report["noisy"].wanted is True
    assert not report["noisy"].override


def test_a_switch_is_applied_here_at_once_and_read_by_a_new_manager_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOCSIN_STATE", str(tmp_path / "state.db"))
    first = manager()
    first.load()
    assert isinstance(first.shared_state, SharedState)
    change = tocsin.state.set_plugin_state("noisy", False, reason="too loud", who="ops")
    assert (change.name, change.enabled, change.reason, change.changed_by) == (
        "noisy",
        False,
        "too loud",
        "ops",
    )
    assert enabled(first)["noisy"] is False  # the writing process applies it at once
    second = manager()
    second.load()
    assert enabled(second) == {"noisy": False, "quiet": True, "reporter": True}
    assert second["noisy"].receivers == () or not any(
        r.connected for r in second["noisy"].receivers
    )


def test_a_switched_off_plugin_is_never_imported(tmp_path: Path) -> None:
    url = str(tmp_path / "state.db")
    with SharedState(url, background=False) as writer:
        writer.set("noisy", False, "never import it", "ops")
    code = f"""
import os, sys, tocsin
os.environ["TOCSIN_STATE"] = {url!r}
pm = tocsin.PluginManager({state_harness.GROUP!r}, use_cache=False)
pm.load()
print(pm.is_enabled("noisy"), "tocsin_state_test_noisy" in sys.modules)
"""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_the_environment_wins_over_the_shared_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "state.db")
    writer = opened(SharedState(url, background=False))
    writer.set("noisy", True, "on for everyone", "ops")
    writer.set("quiet", False, "off for everyone", "ops")
    monkeypatch.setenv("TOCSIN_DISABLED_PLUGINS", "noisy")
    monkeypatch.setenv("TOCSIN_STATE", url)
    pm = manager(disabled=["reporter"])  # replaced by the environment's list, as always
    pm.load()
    assert enabled(pm) == {"noisy": False, "quiet": False, "reporter": True}
    report = tocsin.state.read_shared_state(pm)
    assert report["noisy"].environment == "environment TOCSIN_DISABLED_PLUGINS"
    assert report["noisy"].shared is not None
    assert report["noisy"].shared.enabled
    assert report["noisy"].wanted is False
    assert report["quiet"].configured is True
    assert report["quiet"].wanted is False


def test_the_shared_state_overrides_the_code_and_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "state.db")
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.tocsin]\nstate = "{url}"\ndisabled = ["quiet"]\n', encoding="utf-8"
    )
    with SharedState(url, background=False) as writer:
        writer.set("noisy", True, "the operator wants it", "ops")
    with SharedState(url, background=False) as writer:
        writer.set("quiet", True, "the operator wants it", "ops")
    pm = manager(disabled=["noisy"])
    pm.load()
    assert pm.shared_state.backend.path == url  # found in [tool.tocsin]
    assert enabled(pm) == {"noisy": True, "quiet": True, "reporter": True}


def test_TOCSIN_STATE_off_switches_a_configured_state_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "state.db")
    with SharedState(url, background=False) as writer:
        writer.set("noisy", False, "", "ops")
    monkeypatch.setenv("TOCSIN_STATE", "off")
    pm = manager(state=url)
    pm.load()
    assert pm.shared_state is None
    assert pm.is_enabled("noisy")
    assert tocsin.state.configure(url, pm) is None


def test_configure_after_load_applies_the_switches(tmp_path: Path) -> None:
    url = str(tmp_path / "state.db")
    with SharedState(url, background=False) as writer:
        writer.set("noisy", False, "", "ops")
    pm = manager()
    pm.load()
    assert pm.is_enabled("noisy")
    state = tocsin.state.configure(url, pm, background=False)
    assert state is not None
    assert pm.shared_state is state
    assert not pm.is_enabled("noisy")


def test_a_change_by_another_process_is_applied_by_check_within_the_interval(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "state.db")
    pm = manager()
    state = tocsin.state.configure(url, pm, interval=0.2, background=False)
    assert state is not None
    pm.load()
    other = opened(SharedState(url, background=False))  # another connection: another process
    other.set("noisy", False, "from elsewhere", "ops")
    tocsin.state.check()
    time.sleep(0.25)
    tocsin.state.check()
    assert not pm.is_enabled("noisy")
    calls = []
    original = state.backend.version
    state.backend.version = lambda: calls.append(1) or original()  # type: ignore[method-assign]
    for _ in range(1000):
        tocsin.state.check()
    assert len(calls) <= 1  # rate-limited: at most one backend read per interval


def test_the_background_thread_applies_changes_within_the_interval(tmp_path: Path) -> None:
    url = str(tmp_path / "state.db")
    pm = manager()
    tocsin.state.configure(url, pm, interval=0.2)
    pm.load()
    with SharedState(url, background=False) as writer:
        writer.set("quiet", False, "", "ops")
    state_harness.wait_until(lambda: not pm.is_enabled("quiet"), 2, "the thread to apply it")


def test_a_process_local_override_stays_until_the_shared_switch_changes(tmp_path: Path) -> None:
    url = str(tmp_path / "state.db")
    pm = manager()
    state = tocsin.state.configure(url, pm, background=False)
    assert state is not None
    pm.load()
    pm.disable("quiet")  # by hand, in this process only
    other = opened(SharedState(url, background=False))
    other.set("noisy", False, "", "ops")
    state.refresh()
    assert not pm.is_enabled("quiet")  # untouched: its shared switch did not change
    assert tocsin.state.read_shared_state(pm)["quiet"].override
    other.set("quiet", True, "", "ops")
    state.refresh()
    assert pm.is_enabled("quiet")


def test_the_audit_trail_and_reset(tmp_path: Path) -> None:
    pm = manager()
    tocsin.state.configure(str(tmp_path / "state.db"), pm, background=False)
    pm.load()
    tocsin.state.set_plugin_state("noisy", False, reason="first", who="alice")
    tocsin.state.set_plugin_state("quiet", False, reason="second", who="bob")
    tocsin.state.set_plugin_state("noisy", True, reason="third", who="alice")
    change = tocsin.state.reset_plugin_state("quiet", reason="back to the config", who="carol")
    assert change is not None
    assert change.enabled is None
    assert pm.is_enabled("quiet")
    history = tocsin.state.plugin_history()
    assert [(c.name, c.enabled, c.changed_by, c.reason, c.version) for c in history] == [
        ("quiet", None, "carol", "back to the config", 4),
        ("noisy", True, "alice", "third", 3),
        ("quiet", False, "bob", "second", 2),
        ("noisy", False, "alice", "first", 1),
    ]
    assert [c.reason for c in tocsin.state.plugin_history("noisy", limit=1)] == ["third"]
    assert history[0].pid == os.getpid()
    assert history[0].changed_at <= time.time()
    report = tocsin.state.read_shared_state(pm)
    assert report.version == 4
    assert report["quiet"].shared is None


def test_an_unreachable_backend_keeps_the_last_state_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    url = str(folder / "state.db")
    pm = manager()
    state = tocsin.state.configure(url, pm, interval=0.01, background=False)
    assert state is not None
    pm.load()
    tocsin.state.set_plugin_state("noisy", False, "", "ops")
    # The file is replaced by something that is not a database.
    state.backend.close()
    for name in os.listdir(folder):
        os.unlink(folder / name)
    (folder / "state.db").write_bytes(b"not a database, " * 512)
    with caplog.at_level(logging.WARNING, logger="tocsin.state"):
        for _ in range(5):
            time.sleep(0.02)
            tocsin.state.check()
    assert not state.reachable
    assert state.last_error is not None
    assert [r.getMessage() for r in caplog.records].count(
        next(r.getMessage() for r in caplog.records)
    ) == 1
    assert "cannot be reached" in caplog.records[0].getMessage()
    assert len(caplog.records) == 1
    assert enabled(pm) == {"noisy": False, "quiet": True, "reporter": True}
    report = tocsin.state.read_shared_state(pm)
    assert not report.reachable
    assert report.error
    with pytest.raises(SharedStateError, match="Cannot write"):
        tocsin.state.set_plugin_state("quiet", False)
    # Back again: said once more.
    os.unlink(folder / "state.db")
    with caplog.at_level(logging.WARNING, logger="tocsin.state"):
        time.sleep(0.02)
        tocsin.state.check()
    assert state.reachable
    assert "answers again" in caplog.records[-1].getMessage()


def test_bad_settings_are_errors_naming_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOCSIN_STATE_INTERVAL", "soon")
    with pytest.raises(tocsin.PluginConfigError, match="TOCSIN_STATE_INTERVAL"):
        manager(state=str(tmp_path / "x.db")).load()
    monkeypatch.delenv("TOCSIN_STATE_INTERVAL")
    with pytest.raises(ValueError, match="three slashes"):
        tocsin.state.open_backend("sqlite://x.db")
    monkeypatch.setenv("TOCSIN_STATE", "sqlite://x.db")
    with pytest.raises(tocsin.PluginConfigError, match=r"environment TOCSIN_STATE.*three slashes"):
        manager().load()
    monkeypatch.delenv("TOCSIN_STATE")
    with pytest.raises(ValueError, match="INSTALLED_APPS"):
        tocsin.state.open_backend("django")
    with (
        SharedState(str(tmp_path / "s.db"), background=False) as writer,
        pytest.raises(ValueError, match="plugin name"),
    ):
        writer.set(" x", False)


def test_the_sqlite_file_is_what_the_docs_say(tmp_path: Path) -> None:
    url = str(tmp_path / "state.db")
    with SharedState(url, background=False) as writer:
        writer.set("noisy", False, "why", "who")
    with contextlib.closing(sqlite3.connect(url)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = connection.execute("SELECT name, enabled, reason FROM tocsin_plugin_state")
        assert rows.fetchall() == [("noisy", 0, "why")]
        assert connection.execute("SELECT version FROM tocsin_state_version").fetchone() == (1,)
    connection.close()
