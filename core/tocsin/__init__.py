"""tocsin: Django's signals without Django, and receivers from installed plugins."""

from tocsin._errors import AsyncReceiversInLoopError, TocsinError, UnknownDispatchUidError
from tocsin._signal import ReceiverMark, Signal, receiver

__all__ = [
    "AsyncReceiversInLoopError",
    "ReceiverMark",
    "Signal",
    "TocsinError",
    "UnknownDispatchUidError",
    "receiver",
]
