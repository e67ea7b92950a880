"""A framework's plugin settings applied to the process-wide :data:`tocsin.plugins`.

The Django app (``settings.TOCSIN``) and the Flask extension (``app.config["TOCSIN"]``)
accept the same dict, mapped onto :class:`~tocsin.PluginManager` options:

============ ============================ ===================================
key          PluginManager option         value
============ ============================ ===================================
``autoload`` ``autoload``                 bool: import enabled plugins at all
``disabled`` ``disabled``                 list of plugin names never imported
``plugins``  ``allowed``                  list of names: only these load
``strict``   ``strict``                   bool: a plugin that fails raises
============ ============================ ===================================

They take the place of the manager's code arguments, so the precedence of
:mod:`tocsin._settings` holds: the environment (``TOCSIN_PLUGINS``,
``TOCSIN_DISABLED_PLUGINS``, ``TOCSIN_DISABLE_PLUGIN_AUTOLOAD``,
``TOCSIN_STRICT_PLUGINS``) still has the last word, and ``[tool.tocsin]`` in
pyproject.toml fills in keys the dict leaves out.

There is one process-wide manager.  If nothing has created it yet, it is created with
these options.  If something already has (application code touched
``tocsin.plugins`` before the framework started), the options replace its own, and
its installed plugins are reconciled with them: each plugin discovered from an entry
point ends up enabled exactly when the settings want it (hand-registered plugins are
left alone).  So the framework's settings decide, whoever created the manager.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import tocsin
from tocsin._errors import PluginConfigError

if TYPE_CHECKING:
    from tocsin._manager import PluginManager

__all__ = ["KNOWN_KEYS", "apply_plugin_settings", "plugin_options"]

logger = logging.getLogger("tocsin.contrib")

#: The keys a TOCSIN settings dict may have.
KNOWN_KEYS: tuple[str, ...] = ("autoload", "disabled", "plugins", "strict")

#: Each key's PluginManager option.
_OPTION_FOR = {
    "autoload": "autoload",
    "disabled": "disabled",
    "plugins": "allowed",
    "strict": "strict",
}


def plugin_options(config: object, where: str) -> dict[str, Any]:
    """Check a TOCSIN dict and return the PluginManager options it sets.

    *where* names the dict in messages (``"settings.TOCSIN"``); a key is shown after
    it (``settings.TOCSIN['disabled']``), or in place of ``{key}`` in it
    (``"app.config['TOCSIN']{key} of Flask app 'shop'"``).  None means an empty
    dict.  Raises :class:`~tocsin.PluginConfigError` for anything but a mapping with
    the known keys, booleans for ``autoload``/``strict`` and lists (or tuples, sets)
    of plugin names for ``disabled``/``plugins``.
    """
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise PluginConfigError(
            f"{_at(where)} must be a dict with keys {', '.join(KNOWN_KEYS)}, "
            f"not {type(config).__name__} {config!r}."
        )
    unknown = sorted(map(str, set(config) - set(KNOWN_KEYS)))
    if unknown:
        raise PluginConfigError(
            f"{_at(where)} has unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; the known keys are "
            f"{', '.join(map(repr, KNOWN_KEYS))}."
        )
    options: dict[str, Any] = {}
    for key, value in config.items():
        option = _OPTION_FOR[key]
        if key in ("autoload", "strict"):
            if not isinstance(value, bool):
                raise PluginConfigError(f"{_at(where, key)} must be True or False, not {value!r}.")
            options[option] = value
            continue
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
            raise PluginConfigError(
                f"{_at(where, key)} must be a list of plugin names, not {value!r}."
            )
        for name in value:
            if not isinstance(name, str) or not name.strip():
                raise PluginConfigError(
                    f"{_at(where, key)} must list plugin names (non-empty strings); "
                    f"{name!r} is not one."
                )
        options[option] = sorted(name.strip() for name in value)
    return options


def _at(where: str, key: str | None = None) -> str:
    """*where*, or its *key*: ``settings.TOCSIN['disabled']`` (see plugin_options)."""
    shown = "" if key is None else f"[{key!r}]"
    return where.replace("{key}", shown) if "{key}" in where else where + shown


def apply_plugin_settings(config: object, where: str) -> PluginManager:
    """Apply a TOCSIN dict to the process-wide manager, load plugins, and return it.

    Messages about a setting (a plugin name it lists that is not installed, strict
    mode) name the dict's key as where it came from: ``settings.TOCSIN['disabled']``,
    not ``PluginManager() arguments``.

    See the module documentation for what happens when the manager already exists.
    With the ``strict`` setting a plugin that fails raises
    :class:`~tocsin.PluginLoadError`; otherwise it is warned about and left disabled.
    """
    options = plugin_options(config, where)
    from tocsin._errors import PluginLoadError, TocsinPluginWarning
    from tocsin._manager import PluginManager

    with tocsin._plugins_lock:
        manager = vars(tocsin).get("plugins")
        if manager is None:
            manager = PluginManager("tocsin.plugins", **options)
            vars(tocsin)["plugins"] = manager
            existed = False
        else:
            existed = True
    # No public way to change a manager's options yet: they are what load() and
    # settings() read, so replacing them is what "these are the settings" means.
    # "origin" makes messages name the dict's keys (settings.TOCSIN['disabled']) as
    # where a setting came from, not "PluginManager() arguments".
    if existed:
        manager._options.update({key: options.get(key) for key in _OPTION_FOR.values()})
    manager._options["origin"] = where
    manager.load()
    if not existed:
        return manager
    settings = manager.settings()
    shared = manager.shared_state  # a shared plugin state's switches count too
    for name in list(manager):
        info = manager[name]
        if info.entry_point is None:
            continue  # registered by hand: not the settings' business
        wanted = settings.wants(name) if shared is None else shared.wants(name, settings)
        if info.enabled and not wanted:
            logger.info("Disabling plugin %r: %s does not want it.", name, _at(where))
            manager.disable(name)
        elif wanted and not info.enabled and info.error is None:
            try:
                manager.enable(name)
            except PluginLoadError as error:
                if settings.strict:
                    raise
                # Warned once; the log record (with the traceback) at DEBUG, so that
                # logging's last resort does not print it a second time.
                logger.debug("%s", error, exc_info=error.__cause__)
                warnings.warn(str(error), TocsinPluginWarning, stacklevel=2)
    return manager
