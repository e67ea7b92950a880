"""tocsin: Django's signals without Django, and receivers from installed plugins.

The plugin side (``PluginManager``, the process-wide ``tocsin.plugins``, ``hookimpl``)
is imported on first use, so code that only sends signals never imports pluggy.
"""

from __future__ import annotations

import _thread

from tocsin._errors import (
    AsyncReceiversInLoopError,
    DeclarationError,
    DeferredConfigurationError,
    DeferredDecodeError,
    DeferredEncodeError,
    DeferredError,
    DeferredPublishError,
    MissingInstanceError,
    PluginConfigError,
    PluginLoadError,
    TocsinError,
    TocsinPluginWarning,
    UnknownDispatchUidError,
)
from tocsin._signal import ReceiverMark, Signal, TypedSignal, receiver

#: The installed version; kept equal to pyproject.toml's ``version`` (a test checks), so
#: that reading it costs no metadata lookup.  ``tocsin --version`` prints it.
__version__ = "0.1.0"

# Not typing.TYPE_CHECKING: ``import tocsin`` does not import typing, which would cost
# more than the rest of it together (see tocsin._refs).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tocsin._hookspecs import hookimpl, hookspec
    from tocsin._info import OwnedReceiver, PluginInfo
    from tocsin._manager import PluginManager

    plugins: PluginManager

__all__ = [
    "AsyncReceiversInLoopError",
    "DeclarationError",
    "DeferredConfigurationError",
    "DeferredDecodeError",
    "DeferredEncodeError",
    "DeferredError",
    "DeferredPublishError",
    "MissingInstanceError",
    "OwnedReceiver",
    "PluginConfigError",
    "PluginInfo",
    "PluginLoadError",
    "PluginManager",
    "ReceiverMark",
    "Signal",
    "TocsinError",
    "TocsinPluginWarning",
    "TypedSignal",
    "UnknownDispatchUidError",
    "hookimpl",
    "hookspec",
    "plugins",
    "receiver",
]


_LAZY = {
    "OwnedReceiver": "tocsin._info",
    "PluginInfo": "tocsin._info",
    "PluginManager": "tocsin._manager",
    "hookimpl": "tocsin._hookspecs",
    "hookspec": "tocsin._hookspecs",
}


_plugins_lock = _thread.allocate_lock()  # threading.Lock, without importing threading


def __getattr__(name: str) -> Any:
    if name == "plugins":
        from tocsin._manager import PluginManager

        with _plugins_lock:
            manager = globals().get("plugins")
            if manager is None:
                manager = globals()["plugins"] = PluginManager("tocsin.plugins")
        return manager
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tocsin' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
