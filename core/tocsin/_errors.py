"""Every exception and warning tocsin raises, each naming what was involved and what
to do; all re-exported from :mod:`tocsin` (the deferred-delivery ones also from
:mod:`tocsin.contrib.celery`, which raises them)."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing is slow (see tocsin._refs)
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AsyncReceiversInLoopError",
    "DeclarationError",
    "DeferredConfigurationError",
    "DeferredDecodeError",
    "DeferredEncodeError",
    "DeferredError",
    "DeferredPublishError",
    "MissingInstanceError",
    "PluginConfigError",
    "PluginLoadError",
    "TocsinError",
    "TocsinPluginWarning",
    "UnknownDispatchUidError",
]


class TocsinError(Exception):
    """Base class of every error tocsin raises on its own account."""


class AsyncReceiversInLoopError(TocsinError, RuntimeError):
    """``send()`` was called inside a running event loop, and async receivers would run.

    Raised before any receiver is called, so nothing ran half-way.
    """


class UnknownDispatchUidError(TocsinError, LookupError):
    """No longer raised: kept so that code catching it still imports.

    .. versionchanged:: 0.1 ``disconnect(dispatch_uid=...)`` of an id never connected
       returns False, as in Django (whose own code disconnects uids it may never have
       connected), instead of raising this (issue 12).
    """


# -- plugins --------------------------------------------------------------------------


class PluginLoadError(TocsinError):
    """A plugin could not be imported, registered or enabled.

    ``plugin`` names it; the original exception is the ``__cause__``.  With several
    failures (``load(strict=True)``), ``errors`` holds each one.
    """

    def __init__(self, message: str, plugin: str | None, errors: Sequence[PluginLoadError] = ()):
        super().__init__(message)
        self.plugin = plugin
        self.errors = tuple(errors)


class PluginConfigError(TocsinError, ValueError):
    """A plugin setting has a value tocsin cannot use; the message says where."""


class TocsinPluginWarning(UserWarning):
    """Something about the installed plugins needs a person's attention."""


class DeclarationError(TocsinError, ValueError):
    """A receiver declared in entry-point metadata cannot be read or resolved (see
    :mod:`tocsin._declared`); the message shows how to write it."""


# -- deferred delivery (tocsin.contrib.celery) -----------------------------------------


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


class DeferredPublishError(DeferredError, TimeoutError):
    """The broker did not take a deferred receiver's message within its publish
    timeout.  Raised by the send (``send_robust()`` returns it as that receiver's
    response and calls the others).  ``may_publish_late``: the publish was under way
    when the time ran out, so the broker may still take the message."""

    may_publish_late: bool = False


class DeferredConfigurationError(DeferredError, RuntimeError):
    """Deferred delivery is set up in a way that cannot work; the message says how to fix it."""


# Tracebacks and reprs show where users import these from, not this private module
# (issue 13: "errors show public exception paths"), even for an error raised while
# tocsin itself is being imported.
for _public in (
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
):
    _public.__module__ = "tocsin"
del _public
