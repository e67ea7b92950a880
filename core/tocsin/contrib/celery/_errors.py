"""The errors of deferred delivery, each one a :class:`~tocsin.TocsinError`; they need
nothing of Celery, so they could live in :mod:`tocsin._errors`."""

from __future__ import annotations

from tocsin._errors import TocsinError


class DeferredError(TocsinError):
    """Base class of the errors of deferred delivery."""


class DeferredEncodeError(DeferredError, TypeError):
    """A send's sender or argument cannot travel as JSON (raised by the receiver, at send).

    ``argument`` names it (``"order"``, ``"items[2]"``, or ``"the sender"``),
    ``value_type`` is the type that could not be encoded.
    """

    def __init__(self, message: str, argument: str, value_type: type) -> None:
        super().__init__(message)
        self.argument = argument
        self.value_type = value_type


class DeferredDecodeError(DeferredError, ValueError):
    """The worker cannot turn a message's JSON back into values (the message is rejected)."""


class MissingInstanceError(DeferredDecodeError, LookupError):
    """A model instance a message names is not in the database (yet, or any more).

    Unlike other decoding errors it is retried, like a failure of the receiver: the
    usual cause is a send whose transaction has not committed yet (see ``on_commit``).
    """


class DeferredConfigurationError(DeferredError, RuntimeError):
    """Deferred delivery is set up in a way that cannot work; the message says how to fix it."""
