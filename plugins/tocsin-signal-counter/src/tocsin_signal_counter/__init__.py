"""Counts every signal of tocsin's catalogue, per sender.

The entry point names an instance (``tocsin_signal_counter:plugin``): its methods are
marked with ``@receiver`` in the class body, and the plugin manager connects them as
bound methods when it registers the instance.  It also implements a lifecycle hook.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import tocsin
from tocsin import signals

__all__ = ["SignalCounter", "plugin"]

_EVERY_SIGNAL = [getattr(signals, name) for name in signals.__all__]


def _label(sender: Any) -> str:
    return getattr(sender, "__name__", None) or repr(sender)


class SignalCounter:
    """Counts (signal name, sender) pairs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()

    @tocsin.receiver(_EVERY_SIGNAL)
    def count(self, signal: tocsin.Signal, sender: Any, **kwargs: Any) -> None:
        key = ((signal.name or "?").rpartition(".")[2], _label(sender))
        with self._lock:
            self.counts[key] += 1

    @tocsin.hookimpl
    def tocsin_plugin_enabled(self, manager: tocsin.PluginManager, name: str) -> None:
        if name == "signal-counter":
            with self._lock:
                self.counts.clear()


plugin = SignalCounter()
