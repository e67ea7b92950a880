"""Which plugins load: the operator's switches, from wherever they are set.

Each setting comes from the first of these sources that sets it:

1. the environment — ``TOCSIN_DISABLE_PLUGIN_AUTOLOAD=1``, ``TOCSIN_DISABLED_PLUGINS=a,b``,
   ``TOCSIN_PLUGINS=a,b`` (an allow-list), ``TOCSIN_STRICT_PLUGINS=1``: the operator
   has the last word at deploy time;
2. the arguments given to :class:`~tocsin.PluginManager` by the application's code;
3. the ``[tool.tocsin]`` table of the application's ``pyproject.toml`` (``autoload``,
   ``disabled``, ``plugins``, ``strict``), found from the working directory upwards;
4. the defaults: autoload everything, disable nothing, no allow-list, not strict.

A source replaces a setting, it does not add to it: ``TOCSIN_DISABLED_PLUGINS=x``
disables exactly ``x``, whatever ``pyproject.toml`` lists.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tocsin._errors import PluginConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

__all__ = ["PluginSettings", "resolve_settings"]

ENV_AUTOLOAD_OFF = "TOCSIN_DISABLE_PLUGIN_AUTOLOAD"
ENV_DISABLED = "TOCSIN_DISABLED_PLUGINS"
ENV_ALLOWED = "TOCSIN_PLUGINS"
ENV_STRICT = "TOCSIN_STRICT_PLUGINS"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
_TABLE_KEYS = {"autoload", "disabled", "plugins", "strict"}


@dataclass(frozen=True)
class PluginSettings:
    """The resolved switches, and for each one the source it came from."""

    autoload: bool = True
    disabled: frozenset[str] = frozenset()
    allowed: frozenset[str] | None = None
    strict: bool = False
    sources: Mapping[str, str] = field(default_factory=dict)

    def wants(self, name: str) -> bool:
        """Whether *name* should be enabled by ``load()``."""
        if not self.autoload or name in self.disabled:
            return False
        return self.allowed is None or name in self.allowed

    def named_plugins(self) -> list[tuple[str, str]]:
        """Every (plugin name, setting source) the settings mention, to check they exist."""
        named = [(n, self.sources.get("disabled", "")) for n in sorted(self.disabled)]
        named += [(n, self.sources.get("allowed", "")) for n in sorted(self.allowed or ())]
        return named


def resolve_settings(
    *,
    autoload: bool | None = None,
    disabled: Iterable[str] | None = None,
    allowed: Iterable[str] | None = None,
    strict: bool | None = None,
    pyproject: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> PluginSettings:
    """Merge the sources in precedence order (see the module docstring)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {"autoload": True, "disabled": frozenset(), "allowed": None}
    values["strict"] = False
    sources = dict.fromkeys(values, "default")

    table, table_path = _pyproject_table(pyproject)
    where = f"[tool.tocsin] in {table_path}"
    for key, setting in (("autoload", "autoload"), ("strict", "strict")):
        if key in table:
            values[setting] = _as_bool(table[key], f"{where}: {key}")
            sources[setting] = where
    for key, setting in (("disabled", "disabled"), ("plugins", "allowed")):
        if key in table:
            values[setting] = _as_names(table[key], f"{where}: {key}")
            sources[setting] = where

    code = "PluginManager() arguments"
    for setting, value in (("autoload", autoload), ("strict", strict)):
        if value is not None:
            values[setting] = _as_bool(value, f"{code}: {setting}")
            sources[setting] = code
    for setting, names in (("disabled", disabled), ("allowed", allowed)):
        if names is not None:
            values[setting] = _as_names(names, f"{code}: {setting}")
            sources[setting] = code

    if env.get(ENV_AUTOLOAD_OFF) is not None:
        values["autoload"] = not _env_bool(env, ENV_AUTOLOAD_OFF)
        sources["autoload"] = f"environment {ENV_AUTOLOAD_OFF}"
    if env.get(ENV_STRICT) is not None:
        values["strict"] = _env_bool(env, ENV_STRICT)
        sources["strict"] = f"environment {ENV_STRICT}"
    for variable, setting in ((ENV_DISABLED, "disabled"), (ENV_ALLOWED, "allowed")):
        if env.get(variable) is not None:
            values[setting] = frozenset(n.strip() for n in env[variable].split(",") if n.strip())
            sources[setting] = f"environment {variable}"

    return PluginSettings(sources=sources, **values)


def _env_bool(env: Mapping[str, str], variable: str) -> bool:
    raw = env[variable].strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise PluginConfigError(
        f"Environment variable {variable}={env[variable]!r} is not a yes/no value; use 1 or 0."
    )


def _as_bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise PluginConfigError(f"{where} must be true or false, not {value!r}.")
    return value


def _as_names(value: object, where: str) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise PluginConfigError(f"{where} must be a list of plugin names, not {value!r}.")
    names = list(value)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise PluginConfigError(f"{where} must list plugin names; {name!r} is not one.")
    return frozenset(n.strip() for n in names)


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` from *start* (the working directory) upwards."""
    from pathlib import Path

    found = _find_pyproject(os.path.realpath(start if start is not None else os.getcwd()))
    return None if found is None else Path(found)


def _find_pyproject(folder: str) -> str | None:
    """:func:`find_pyproject` on strings, without pathlib: *folder* is absolute and
    resolved; the answer is ``str()`` of what find_pyproject returns."""
    while True:
        candidate = os.path.join(folder, "pyproject.toml")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _path_text(path: str | os.PathLike[str]) -> str:
    """``str(pathlib.Path(path))``: the name messages and sources give the file."""
    if type(path) is str and os.sep == "/" and path and path == os.path.normpath(path):
        return path  # nothing pathlib would tidy (no "//", "/./", trailing "/")
    from pathlib import Path

    return str(Path(path))


def _pyproject_table(
    pyproject: str | os.PathLike[str] | None,
) -> tuple[Mapping[str, Any], str]:
    if pyproject is not None:
        path = _path_text(pyproject)
    else:
        found = _find_pyproject(os.path.realpath(os.getcwd()))
        if found is None:
            return {}, ""
        path = found
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        if pyproject is not None:
            raise PluginConfigError(
                f"Cannot read {path}, given as PluginManager(pyproject=...): {error}. "
                f"Pass the path of a readable pyproject.toml, or leave pyproject out to "
                f"use the one found from the working directory."
            ) from error
        return {}, ""
    if "tocsin" not in text:  # skip parsing the usual pyproject.toml that has no table
        return {}, path
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PluginConfigError(f"{path} is not valid TOML: {error}") from error
    table = document.get("tool", {}).get("tocsin", {})
    if not isinstance(table, dict):
        raise PluginConfigError(f"[tool.tocsin] in {path} must be a table.")
    unknown = sorted(set(table) - _TABLE_KEYS)
    if unknown:
        raise PluginConfigError(
            f"[tool.tocsin] in {path} has unknown keys {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(_TABLE_KEYS))}."
        )
    return table, path
