"""Retries: :class:`RetryPolicy`, which says whether and when a failed deferred receiver
is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """When and how soon a failed deferred receiver is tried again (Celery's names).

    A failure whose exception is an instance of ``autoretry_for`` (and not of
    ``dont_autoretry_for``) is retried while fewer than ``max_retries`` retries were
    made (None: forever).  Retry *n* (from 0) waits ``retry_backoff * 2**n`` seconds,
    at most ``retry_backoff_max``; with ``retry_jitter``, a random time up to that
    (full jitter).  ``retry_backoff=False`` waits ``retry_delay`` every time.
    """

    autoretry_for: tuple[type[BaseException], ...] = (Exception,)
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    max_retries: int | None = 3
    retry_backoff: bool | float = True
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    retry_delay: float = 180.0

    def __post_init__(self) -> None:
        for name in ("autoretry_for", "dont_autoretry_for"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(
                isinstance(c, type) and issubclass(c, BaseException) for c in value
            ):
                raise TypeError(f"{name} must be a tuple of exception classes, not {value!r}.")
        if self.max_retries is not None and (
            type(self.max_retries) is not int or self.max_retries < 0
        ):
            raise ValueError(f"max_retries must be None or an int >= 0, not {self.max_retries!r}.")
        for name in ("retry_backoff_max", "retry_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative.")
        if not isinstance(self.retry_backoff, bool) and self.retry_backoff < 0:
            raise ValueError("retry_backoff must not be negative.")

    def should_retry(self, error: BaseException, retries: int) -> bool:
        """Whether a failure with *error*, after *retries* retries, is retried."""
        if not isinstance(error, self.autoretry_for) or isinstance(error, self.dont_autoretry_for):
            return False
        return self.max_retries is None or retries < self.max_retries

    def countdown(self, retries: int) -> float:
        """Seconds to wait before retry number *retries* (0 for the first retry)."""
        if self.retry_backoff is False:
            return float(self.retry_delay)
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        delay = min(self.retry_backoff_max, factor * 2.0 ** min(retries, 64))
        if self.retry_jitter:
            delay = random.uniform(0.0, delay)
        return max(0.0, delay)
