"""The exceptions tocsin raises, each naming what was involved and what to do."""

from __future__ import annotations

__all__ = [
    "AsyncReceiversInLoopError",
    "TocsinError",
    "UnknownDispatchUidError",
]


class TocsinError(Exception):
    """Base class of every error tocsin raises on its own account."""


class AsyncReceiversInLoopError(TocsinError, RuntimeError):
    """``send()`` was called inside a running event loop, and async receivers would run.

    Raised before any receiver is called, so nothing ran half-way.
    """


class UnknownDispatchUidError(TocsinError, LookupError):
    """``disconnect(dispatch_uid=...)`` named an id never connected to that signal.

    An id that *was* connected and has since been disconnected is not an error
    (``disconnect`` then returns False, as in Django), so teardown code may disconnect
    twice; an id never seen is almost always a typo.
    """
