"""What every shared-state backend stores and answers: the contract of a backend.

A backend keeps, outside any process, one row per plugin an operator switched
(:class:`PluginSwitch`: enabled or not, who, when, why), an append-only audit trail of
every switch (:class:`Change`), and a *version* that every write increases.  Processes
poll :meth:`Backend.version` (one cheap read: ``PRAGMA data_version`` for SQLite, one
row for SQL databases, one key for Redis) and read the whole state only when it moved;
a backend that can push (Redis pub/sub) also offers :meth:`Backend.listen`.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backend", "Change", "PluginSwitch", "check_name", "default_who", "now"]


@dataclass(frozen=True)
class PluginSwitch:
    """The shared state of one plugin: the last switch an operator made."""

    name: str
    enabled: bool
    changed_at: float  # seconds since the epoch
    changed_by: str
    reason: str


@dataclass(frozen=True)
class Change:
    """One entry of the audit trail: a switch, and from where it was made.

    ``enabled`` is None for a reset: the shared switch was removed, and processes went
    back to what their own configuration says."""

    name: str
    enabled: bool | None
    changed_at: float
    changed_by: str
    reason: str
    host: str
    pid: int
    version: int


def default_who() -> str:
    """``user@host`` of this process: who a change is recorded as when none is given."""
    try:
        user = getpass.getuser()
    except Exception:
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(
            f"A plugin name must be a non-empty str without spaces around it, not {name!r}."
        )
    if len(name) > 200:
        raise ValueError(f"A plugin name has at most 200 characters; {name[:40]!r}... has more.")
    return name


class Backend(ABC):
    """Where the shared state lives.  Every method may raise when the store cannot be
    reached; :class:`tocsin.state.SharedState` catches, logs once and keeps going."""

    #: Where the state is, for messages (never with a password).
    description: str = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"

    def _forked(self) -> bool:
        """True (once) in a child process forked since the last call: connections made
        by the parent must not be used (nor closed) here."""
        pid = os.getpid()
        if pid == self._pid:
            return False
        self._pid = pid
        self._lock = threading.Lock()
        return True

    @abstractmethod
    def version(self) -> object:
        """A cheap token that changes whenever the state may have changed."""

    @abstractmethod
    def read(self) -> tuple[int, dict[str, PluginSwitch]]:
        """The state's version and every plugin's switch."""

    @abstractmethod
    def write(self, name: str, enabled: bool, reason: str, who: str) -> Change:
        """Record a switch (state, audit trail and version, atomically) and return it."""

    @abstractmethod
    def forget(self, name: str, reason: str, who: str) -> Change | None:
        """Remove *name*'s switch, so that processes fall back to their own
        configuration; recorded in the audit trail with ``enabled=None``.  None if
        there was no switch to remove."""

    @abstractmethod
    def history(self, name: str | None = None, limit: int = 100) -> list[Change]:
        """The newest *limit* changes (of *name* only, if given), newest first."""

    def listen(self, wake: Callable[[], None], stop: threading.Event) -> bool:
        """Block, calling *wake* whenever another process announces a change, until
        *stop* is set; return False at once if this backend cannot push."""
        return False

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections (the backend may be used again: it reconnects)."""


def now() -> float:
    return time.time()
