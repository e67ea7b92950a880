"""Shared fixtures."""

from __future__ import annotations

# --- plugin manager and discovery tests (helpers in plugin_helpers.py) ---------------
import importlib
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import plugin_helpers


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the test plugin distributions, built and installed by pip."""
    return plugin_helpers.build_site(tmp_path_factory.mktemp("plugin-dists"))


class Scenario:
    """Runs code in a fresh interpreter with the test plugins on its path."""

    def __init__(self, site: Path, tmp_path: Path) -> None:
        self.site = site
        self.cache = tmp_path / "cache"
        self.marker = tmp_path / "imported.txt"
        self.tmp_path = tmp_path

    def __call__(
        self,
        code: str,
        *,
        path: list[Path] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> dict[str, Any]:
        return plugin_helpers.run_scenario(
            code,
            path=[self.site] if path is None else path,
            cache=self.cache,
            env=env,
            cwd=self.tmp_path if cwd is None else cwd,
            marker=self.marker,
        )

    def imported(self) -> list[str]:
        """What the plugins' modules recorded as imported, in every run so far."""
        return [e for e in plugin_helpers.marker_lines(self.marker) if e.startswith("import ")]


@pytest.fixture
def scenario(plugin_site: Path, tmp_path: Path) -> Scenario:
    return Scenario(plugin_site, tmp_path)


class InProcess:
    """The test plugins on sys.path of this process, freshly importable."""

    def __init__(self) -> None:
        self.managers: list[Any] = []

    def manager(self, **options: Any) -> Any:
        from tocsin import PluginManager

        pm = PluginManager(plugin_helpers.GROUP, **options)
        self.managers.append(pm)
        return pm

    @property
    def host(self) -> types.ModuleType:
        return importlib.import_module("tt_host")

    def module(self, name: str) -> types.ModuleType:
        return sys.modules[name]


@pytest.fixture
def inproc(
    plugin_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InProcess]:
    """Plugins importable in this process; every manager made is emptied afterwards."""
    for variable in plugin_helpers.TOCSIN_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TOCSIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TT_MARKER", raising=False)
    monkeypatch.chdir(tmp_path)  # no pyproject.toml with a [tool.tocsin] table above
    plugin_helpers.purge_modules()
    monkeypatch.syspath_prepend(str(plugin_site))
    env = InProcess()
    yield env
    for pm in env.managers:
        for name in list(pm):
            pm.unregister(name)
    plugin_helpers.purge_modules()


@pytest.fixture
def new_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str], Any]]:
    """Write a module with a name unique to this test, and import it."""
    root = tmp_path / "modules"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    made: list[str] = []

    def make(name: str, source: str) -> Any:
        unique = f"ttm_{abs(hash(str(tmp_path))):x}_{name}"
        plugin_helpers.write_module(root, unique, source)
        importlib.invalidate_caches()
        made.append(unique)
        return importlib.import_module(unique)

    yield make
    for name in made:
        sys.modules.pop(name, None)


@pytest.fixture(autouse=True)
def tocsin_loggers_enabled() -> None:
    """Each test starts with tocsin's loggers enabled.  ``logging.config.fileConfig``
    (which an Alembic ``env.py`` calls) disables every logger that exists at that
    moment, for the rest of the process: a later test's ``caplog`` would then see
    nothing of tocsin's, depending only on the order the tests ran in."""
    import logging

    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name == "tocsin" or name.startswith("tocsin.")):
            logger.disabled = False
