"""The message of one deferred send, as the sender builds it and the worker checks it: a
JSON envelope naming the signal, the receiver, the sender and the named arguments."""

from __future__ import annotations

from typing import Any

from tocsin.contrib.celery._codecs import JSON, shorten

#: The version of the envelope's layout, its ``"tocsin"`` key.
MESSAGE_VERSION = 1
#: The keys of an envelope, exactly.
_ENVELOPE_KEYS = frozenset({"tocsin", "signal", "receiver", "sender", "named"})

#: The keyword arguments the worker adds to each call; a send may not use them.
RESERVED_ARGUMENTS = frozenset({"signal", "sender", "tocsin_message_id", "tocsin_attempt"})


class Rejection(Exception):
    """Internal: a message the worker refuses to act on."""


class Message:
    """An envelope that passed the worker's checks; the sender and arguments still JSON."""

    __slots__ = ("named", "receiver", "sender", "signal")

    def __init__(self, envelope: Any) -> None:
        if type(envelope) is not dict or envelope.keys() != _ENVELOPE_KEYS:
            raise Rejection(f"not a tocsin message: {shorten(envelope)}")
        if envelope["tocsin"] != MESSAGE_VERSION:
            raise Rejection(f"unknown message version {envelope['tocsin']!r}")
        signal, receiver, named = envelope["signal"], envelope["receiver"], envelope["named"]
        if type(signal) is not str or type(receiver) is not str or type(named) is not dict:
            raise Rejection(f"malformed tocsin message: {shorten(envelope)}")
        for key in named:
            if type(key) is not str or not key.isidentifier() or key in RESERVED_ARGUMENTS:
                raise Rejection(f"bad argument name {shorten(key)}")
        self.signal: str = signal
        self.receiver: str = receiver
        self.sender: JSON = envelope["sender"]
        self.named: dict[str, JSON] = named


def argsrepr(envelope: dict[str, Any]) -> str:
    # What Celery shows for the task's arguments in logs, events and monitors: names,
    # not values (those may be personal data), and cheaper than Celery's saferepr of
    # the whole envelope, which would be most of what a deferred send costs over delay().
    named = ", ".join(envelope["named"])
    return f"({envelope['signal']!r} -> {envelope['receiver']!r}: {named})"
