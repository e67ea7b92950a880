"""What a plugin manager tells about its plugins: read-only records, safe to keep."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from tocsin._signal import Signal

__all__ = ["OwnedReceiver", "PluginInfo"]


@dataclass(frozen=True)
class OwnedReceiver:
    """A receiver a plugin declares, and whether the plugin's connection is live."""

    signal: Signal
    receiver: Callable[..., Any]
    sender: Any
    dispatch_uid: Hashable | None
    priority: int
    connected: bool


@dataclass(frozen=True)
class PluginInfo:
    """A snapshot of what the manager knows about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    enabled: bool
    loaded: bool
    error: BaseException | None
    receivers: tuple[OwnedReceiver, ...]
    entry_point: str | None
    plugin: object | None
