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

The allow-list decides what ``load()`` enables (:meth:`PluginSettings.wants`): only
the plugins it names load, and every other one is treated as disabled — listed, never
imported, and still enabled by an explicit ``enable()``.  A name both allowed and
disabled stays disabled; with autoload off nothing loads.

A value tocsin cannot use is a :class:`~tocsin.PluginConfigError` saying where it came
from, never a guess: the yes/no variables take the words of :mod:`tocsin._switches`,
a name list with an empty name in it (``a,,b``) is refused, and a ``pyproject.toml``
that cannot be read as a project file — not UTF-8, not TOML, ``tool`` or
``tool.tocsin`` not a table — is an error naming the file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tocsin._errors import PluginConfigError
from tocsin._switches import parse_switch

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "PluginSettings",
    "StateSettings",
    "find_pyproject",
    "resolve_settings",
    "resolve_state_settings",
]

ENV_AUTOLOAD_OFF = "TOCSIN_DISABLE_PLUGIN_AUTOLOAD"
ENV_DISABLED = "TOCSIN_DISABLED_PLUGINS"
ENV_ALLOWED = "TOCSIN_PLUGINS"
ENV_STRICT = "TOCSIN_STRICT_PLUGINS"
ENV_STATE = "TOCSIN_STATE"
ENV_STATE_INTERVAL = "TOCSIN_STATE_INTERVAL"

_TABLE_KEYS = {"autoload", "disabled", "plugins", "strict", "state", "state_interval"}
#: Each setting's key in ``[tool.tocsin]`` and in a framework's ``TOCSIN`` dict.
_KEY_OF = {"autoload": "autoload", "disabled": "disabled", "allowed": "plugins", "strict": "strict"}


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
    origin: str | None = None,
) -> PluginSettings:
    """Merge the sources in precedence order (see the module docstring).

    *origin* names where the code arguments came from when they are a framework's
    settings dict (``"settings.TOCSIN"``): each setting's source is then that dict's
    key (``settings.TOCSIN['disabled']``) rather than ``PluginManager() arguments``.
    ``{key}`` in *origin* says where the key goes (``"app.config['TOCSIN']{key} of
    Flask app 'shop'"``); without it, the key is appended.
    """
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
            sources[setting] = _code_source(origin, setting)
    for setting, names in (("disabled", disabled), ("allowed", allowed)):
        if names is not None:
            values[setting] = _as_names(names, f"{code}: {setting}")
            sources[setting] = _code_source(origin, setting)

    if env.get(ENV_AUTOLOAD_OFF) is not None:
        values["autoload"] = not parse_switch(ENV_AUTOLOAD_OFF, env[ENV_AUTOLOAD_OFF])
        sources["autoload"] = f"environment {ENV_AUTOLOAD_OFF}"
    if env.get(ENV_STRICT) is not None:
        values["strict"] = parse_switch(ENV_STRICT, env[ENV_STRICT])
        sources["strict"] = f"environment {ENV_STRICT}"
    for variable, setting in ((ENV_DISABLED, "disabled"), (ENV_ALLOWED, "allowed")):
        if env.get(variable) is not None:
            values[setting] = _env_names(variable, env[variable])
            sources[setting] = f"environment {variable}"

    return PluginSettings(sources=sources, **values)


def _code_source(origin: str | None, setting: str) -> str:
    """Where a code argument came from, in messages: see resolve_settings()."""
    if not origin:
        return "PluginManager() arguments"
    key = f"[{_KEY_OF[setting]!r}]"
    return origin.replace("{key}", key) if "{key}" in origin else origin + key


def _env_names(variable: str, raw: str) -> frozenset[str]:
    """A comma-separated list of plugin names; empty (or only spaces) names none.

    An empty name between commas is refused rather than skipped: ``TOCSIN_PLUGINS=",,,"``
    used to be read as an allow-list naming nothing, which silently disabled every
    plugin (issue 14).
    """
    if not raw.strip():
        return frozenset()
    names = [name.strip() for name in raw.split(",")]
    if "" in names:
        raise PluginConfigError(
            f"Environment variable {variable}={raw!r} has an empty plugin name (name "
            f"{names.index('') + 1} of {len(names)}). Separate the names with single "
            f"commas and no comma at either end, e.g. {variable}=a,b; set it to an empty "
            f"value to name no plugin."
        )
    return frozenset(names)


def _as_bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise PluginConfigError(f"{where} must be true or false, not {value!r}.")
    return value


def _as_names(value: object, where: str) -> frozenset[str]:
    # A TOML inline table ({a = 1}) is a dict, and iterating it gives its keys: not a list.
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise PluginConfigError(f"{where} must be a list of plugin names, not {value!r}.")
    names = list(value)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise PluginConfigError(f"{where} must list plugin names; {name!r} is not one.")
    return frozenset(n.strip() for n in names)


def find_pyproject(start: str | os.PathLike[str] | None = None) -> str | None:
    """The nearest ``pyproject.toml`` from *start* (default: the working directory)
    upwards, as an absolute path with symbolic links resolved; None if there is none.

    A folder is searched with :mod:`os.path` rather than :mod:`pathlib`, which
    ``load()`` does not otherwise import when the entry-point index is warm.
    """
    folder = os.path.realpath(os.getcwd() if start is None else start)
    while True:
        candidate = os.path.join(folder, "pyproject.toml")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _pyproject_table(
    pyproject: str | os.PathLike[str] | None,
) -> tuple[Mapping[str, Any], str]:
    """The ``[tool.tocsin]`` table of *pyproject* (or of the nearest pyproject.toml),
    and the path it was read from."""
    if pyproject is not None:
        path = os.fspath(pyproject)
    else:
        found = find_pyproject()
        if found is None:
            return {}, ""
        path = found
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        if pyproject is not None:
            raise PluginConfigError(
                f"Cannot read {path}, given as PluginManager(pyproject=...): {error}. "
                f"Pass the path of a readable pyproject.toml, or leave pyproject out to "
                f"use the one found from the working directory."
            ) from error
        return {}, ""
    if b"tocsin" not in data:  # skip parsing the usual pyproject.toml that has no table
        return {}, path
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PluginConfigError(
            f"{path} is not valid TOML: TOML files are UTF-8, and byte {error.start} is "
            f"not ({error.reason})."
        ) from error
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PluginConfigError(f"{path} is not valid TOML: {error}") from error
    tool = document.get("tool", {})
    if not isinstance(tool, dict):
        raise PluginConfigError(
            f"[tool] in {path} must be a table (as PEP 518 has it), not {_toml_kind(tool)}."
        )
    table = tool.get("tocsin", {})
    if not isinstance(table, dict):
        raise PluginConfigError(
            f"[tool.tocsin] in {path} must be a table, not {_toml_kind(table)}."
        )
    unknown = sorted(set(table) - _TABLE_KEYS)
    if unknown:
        raise PluginConfigError(
            f"[tool.tocsin] in {path} has unknown keys {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(_TABLE_KEYS))}."
        )
    return table, path


def _toml_kind(value: object) -> str:
    """What a TOML value is, in TOML's words (``[[tool]]`` makes an array of tables)."""
    if isinstance(value, list):
        tables = bool(value) and all(isinstance(item, dict) for item in value)
        return "an array of tables" if tables else "an array"
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    return kinds.get(type(value), f"a {type(value).__name__}")


# -- the shared plugin state (tocsin.state) ---------------------------------------------

#: Values of TOCSIN_STATE that switch a configured shared state off.
_STATE_OFF = {"", "off", "none", "no", "0", "false"}


@dataclass(frozen=True)
class StateSettings:
    """Where the shared plugin state is (None: nowhere), how often processes check it,
    and where each of the two came from."""

    url: str | None = None
    interval: float = 1.0
    sources: Mapping[str, str] = field(default_factory=dict)


def resolve_state_settings(
    *,
    url: str | None = None,
    interval: float | None = None,
    pyproject: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> StateSettings:
    """The shared-state URL and check interval, with the precedence of
    :func:`resolve_settings`: ``TOCSIN_STATE`` / ``TOCSIN_STATE_INTERVAL``, then the
    code's arguments, then ``state`` / ``state_interval`` in ``[tool.tocsin]``.
    ``TOCSIN_STATE=off`` (or empty) turns a shared state the code or pyproject.toml
    configures off."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {"url": None, "interval": 1.0}
    sources = dict.fromkeys(values, "default")
    table, table_path = _pyproject_table(pyproject)
    where = f"[tool.tocsin] in {table_path}"
    if "state" in table:
        values["url"] = _as_url(table["state"], f"{where}: state")
        sources["url"] = where
    if "state_interval" in table:
        values["interval"] = _as_interval(table["state_interval"], f"{where}: state_interval")
        sources["interval"] = where
    if url is not None:
        values["url"] = _as_url(url, "the code's shared-state URL")
        sources["url"] = "code"
    if interval is not None:
        values["interval"] = _as_interval(interval, "the code's shared-state interval")
        sources["interval"] = "code"
    raw = env.get(ENV_STATE)
    if raw is not None:
        values["url"] = None if raw.strip().lower() in _STATE_OFF else raw.strip()
        sources["url"] = f"environment {ENV_STATE}"
    raw = env.get(ENV_STATE_INTERVAL)
    if raw is not None:
        try:
            number = float(raw)
        except ValueError:
            number = -1.0
        values["interval"] = _as_interval(
            number, f"Environment variable {ENV_STATE_INTERVAL}={raw!r}"
        )
        sources["interval"] = f"environment {ENV_STATE_INTERVAL}"
    return StateSettings(sources=sources, **values)


def _as_url(value: object, where: str) -> str | None:
    if not isinstance(value, str):
        raise PluginConfigError(f"{where} must be a URL or a file path (a string), not {value!r}.")
    return None if value.strip().lower() in _STATE_OFF else value.strip()


def _as_interval(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise PluginConfigError(
            f"{where} must be a number of seconds above 0 and at most 3600, not {value!r}."
        )
    return float(value)
