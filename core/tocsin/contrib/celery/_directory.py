"""The directory of deferred receivers: every live one by identity, and the look-up that
finds the one a message names, only among those connected to the signal it names."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from tocsin._registry import Registry
from tocsin._signal import Signal
from tocsin.contrib.celery._retry import RetryPolicy


class Deliverable(Protocol):
    """What the directory and the worker need of a deferred receiver.

    :class:`~tocsin.contrib.celery.DeferredReceiver` is the one kind there is; the
    worker side, which the receiver itself uses to install the task, sees it through
    this interface only.
    """

    @property
    def identity(self) -> str: ...

    @property
    def func(self) -> Callable[..., Any]: ...

    @property
    def is_async(self) -> bool: ...

    @property
    def retry_policy(self) -> RetryPolicy: ...

    @property
    def signals(self) -> list[Signal]: ...

    def __call__(self, *, signal: Signal, sender: Any, **named: Any) -> Any: ...


#: Guards :data:`_by_identity`: receivers are made, and messages resolved, in any thread.
_registry_lock = threading.Lock()
#: Every live deferred receiver, by identity (several may share one until resolved).
_by_identity: dict[str, weakref.WeakSet[Deliverable]] = {}


def register_receiver(proxy: Deliverable) -> None:
    """List *proxy* under its identity, for as long as it lives."""
    with _registry_lock:
        _by_identity.setdefault(proxy.identity, weakref.WeakSet()).add(proxy)


def resolve(signal_name: str, identity: str) -> tuple[Deliverable, Signal] | None:
    """The deferred receiver *identity* connected here to the signal named *signal_name*.

    Only live deferred receivers are considered, and only while connected to a signal
    of that name: nothing is imported.  None if there is none, or more than one.
    """
    with _registry_lock:
        candidates = list(_by_identity.get(identity, ()))
    found: list[tuple[Deliverable, Signal]] = []
    for proxy in candidates:
        for signal in proxy.signals:
            if signal.name == signal_name and any(r is proxy for r in signal.receivers):
                found.append((proxy, signal))
    return found[0] if len(found) == 1 else None


def connected_for(proxy: Deliverable, signal: Signal, sender: Any) -> bool:
    """Whether *proxy* is connected to *signal* for *sender*, by the rule a send
    applies: a connection for any sender, or one for this sender (``str`` and ``int``
    senders by value, any other by identity).  The worker asks this of the sender it
    decoded, so that a message cannot run a receiver for a sender it was not connected
    for."""
    anyone = Registry.sender_key(None)
    key = Registry.sender_key(sender)
    for connection in signal.registry.live_connections():
        if connection.receiver is not proxy:
            continue
        if connection.sender_key is anyone:
            return True
        if key is not anyone and connection.sender_key == key and connection.serves(sender):
            return True
    return False
