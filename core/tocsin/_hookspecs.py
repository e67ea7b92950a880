"""The hooks a tocsin plugin may implement, declared for pluggy.

A plugin implements them with :data:`tocsin.hookimpl`::

    import tocsin

    @tocsin.hookimpl
    def tocsin_plugin_enabled(manager, name):
        ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pluggy

from tocsin._info import PluginInfo
from tocsin._signal import Signal

__all__ = ["hookimpl", "hookspec"]

PROJECT = "tocsin"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def tocsin_plugin_enabled(manager: Mapping[str, PluginInfo], name: str) -> None:
    """Plugin *name* was just enabled and its receivers connected.

    Called on every registered plugin, the enabled one included, so a plugin can set
    itself up (open a database, start a thread) or react to another one.
    """


@hookspec
def tocsin_plugin_disabled(manager: Mapping[str, PluginInfo], name: str) -> None:
    """Plugin *name* is about to be disabled; its receivers are still connected.

    Called on every registered plugin, the disabled one included (its last call).
    """


@hookspec
def tocsin_signals() -> Sequence[Signal]:
    """Return the signals this plugin declares, so ``tocsin signals`` and
    ``tocsin doctor`` list them beside the built-in catalogue."""
    return ()
