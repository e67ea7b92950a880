"""Publishing a message in a bounded time.

Celery's ``apply_async`` waits on the broker's socket without a limit: a broker that
accepts the TCP connection and never answers (a hung Redis, a proxy in front of a dead
one, a firewall that eats the replies) blocks the sending thread forever, and with it
the web request that sent the signal.  So the publish runs in a publisher thread while
the sending thread waits at most the receiver's ``publish_timeout``, then raises
:class:`DeferredPublishError`, naming the receiver and the broker.

The publisher threads are daemon threads, reused, at most :data:`MAX_PUBLISHERS` per
process: a publish stuck on a dead broker holds one until the socket gives up, and
when all are stuck, further sends wait for one (within their own time limit) instead
of starting more.  A publish that a publisher thread has not started yet when the
sending thread gives up is never started; one already under way cannot be recalled,
so if the broker answers after all, that message is published late (deliveries are at
least once anyway; see the docs).

What Celery would have taken from the sending thread is taken there and passed on:
the parent task (``parent_id``, ``root_id``, the trail of results, the priority when
``task_inherit_parent_priority`` is set).  An app with ``task_always_eager`` runs the
task inline, in the sending thread, as before.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from tocsin._errors import DeferredPublishError

__all__ = [
    "DEFAULT_PUBLISH_TIMEOUT",
    "MAX_PUBLISHERS",
    "broker_of",
    "check_publish_timeout",
    "publish",
    "publish_timeout_of",
]

#: The logger of the whole package, under the name users configure.
logger = logging.getLogger("tocsin.contrib.celery")

#: How long a send waits for the broker to take one message, unless the receiver
#: (``deferred(publish_timeout=...)``) or the app (``app.conf.tocsin_publish_timeout``)
#: says otherwise.  Ten seconds: far beyond a healthy broker's milliseconds, and short
#: enough that a request which sends a signal still gets an answer.
DEFAULT_PUBLISH_TIMEOUT = 10.0
#: The app setting that gives every deferred receiver of the app its publish timeout.
APP_SETTING = "tocsin_publish_timeout"
#: At most this many publisher threads per process.
MAX_PUBLISHERS = 16


def check_publish_timeout(value: object, where: str) -> float | None:
    """*value* as a publish timeout: a number of seconds > 0 (``math.inf``: no bound),
    or None (not set here)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(  # (not value > 0: NaN too)
            f"{where} must be a number of seconds > 0 (math.inf for no bound), not {value!r}."
        )
    return float(value)


def publish_timeout_of(own: float | None, app: Any) -> float:
    """The receiver's own timeout, else the app's ``tocsin_publish_timeout``, else the
    default."""
    if own is not None:
        return own
    setting = check_publish_timeout(app.conf.get(APP_SETTING), f"app.conf.{APP_SETTING}")
    return DEFAULT_PUBLISH_TIMEOUT if setting is None else setting


def publish(
    task: Any,
    args: tuple[Any, ...],
    options: Mapping[str, Any],
    *,
    timeout: float,
    identity: str,
    signal: str,
    on_late: Callable[[BaseException | None], None] | None = None,
) -> Any:
    """``task.apply_async(args, **options)``, waiting at most *timeout* seconds.

    *on_late*: when the time is up while the publish is under way, it is called (in
    the publisher thread) with None or the error once that publish ends after all.
    """
    app = task.app
    if math.isinf(timeout) or app.conf.task_always_eager:
        return task.apply_async(args, **options)
    options = dict(options)
    parent = app.current_worker_task
    if parent is not None and options.get("add_to_parent", True):
        request = parent.request
        options.setdefault("root_id", request.root_id or request.id)
        options.setdefault("parent_id", request.id)
        if app.conf.task_inherit_parent_priority:
            options.setdefault("priority", (request.delivery_info or {}).get("priority"))
    else:
        parent = None
    options["add_to_parent"] = False  # the publisher thread has no parent: done here
    job = _Job(lambda: task.apply_async(args, **options))
    _publishers.run(job)
    if not job.done.wait(timeout):
        with job.lock:
            finished = job.finished
            if not finished:
                job.abandoned = True
                job.late = on_late
            started = job.started
    else:
        finished = True
    if not finished:
        broker = broker_of(app)
        late = (
            " It may still be published if the broker answers later."
            if started
            else " It was not published."
        )
        error = DeferredPublishError(
            f"Could not enqueue deferred receiver {identity} for signal {signal!r}: the "
            f"broker {broker} did not take the message within {timeout:g} s.{late} Check "
            f"that the broker is up and answering; the time limit is "
            f"deferred(publish_timeout=...) or app.conf.{APP_SETTING}."
        )
        error.may_publish_late = started
        raise error
    if job.error is not None:
        raise job.error
    if parent is not None:
        parent.add_trail(job.result)
    return job.result


def broker_of(app: Any) -> str:
    """The app's broker URL, without its password."""
    try:
        return _sanitized(str(app.conf.broker_write_url or app.conf.broker_url))
    except Exception:  # only naming it: an odd URL must not hide the real error
        return "(its URL cannot be shown)"


@functools.lru_cache(maxsize=64)
def _sanitized(url: str) -> str:
    # Cached: parsing the URL cost ~50 us, paid on every outbox send (bench_outbox).
    from kombu.utils.url import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
        maybe_sanitize_url,
    )

    return str(maybe_sanitize_url(url))


class _Job:
    __slots__ = (
        "abandoned",
        "done",
        "error",
        "finished",
        "func",
        "late",
        "lock",
        "result",
        "started",
    )

    def __init__(self, func: Callable[[], Any]) -> None:
        self.func = func
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.started = False
        self.abandoned = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.late: Callable[[BaseException | None], None] | None = None


class _Publishers:
    """Reused daemon threads that run publish jobs, at most :data:`MAX_PUBLISHERS`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)
        self.jobs: deque[_Job] = deque()
        self.threads = 0
        self.idle = 0

    def run(self, job: _Job) -> None:
        with self.lock:
            self.jobs.append(job)
            if self.idle >= len(self.jobs):  # an idle publisher for each waiting job
                self.ready.notify()
                return
            if self.threads < MAX_PUBLISHERS:
                self.threads += 1
                thread = threading.Thread(
                    target=self._serve, name="tocsin-celery-publisher", daemon=True
                )
                thread.start()
            # else: every publisher is busy; the job waits for one (or is abandoned)

    def _serve(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
                while not self.jobs:
                    self.ready.wait()
                self.idle -= 1
                job = self.jobs.popleft()
            with job.lock:
                if job.abandoned:
                    continue
                job.started = True
            try:
                job.result = job.func()
            except BaseException as error:  # handed to the sending thread
                job.error = error
            finally:
                job.func = _nothing  # drop the message and its arguments
                with job.lock:
                    job.finished = True
                    late, job.late = job.late, None
                job.done.set()
            if late is not None:  # the sender gave up waiting; it wants the outcome
                try:
                    late(job.error)
                except Exception:
                    logger.exception("A late publish's callback failed.")

    def forget(self) -> None:
        """After a fork: the child has none of the parent's threads."""
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)
        self.jobs = deque()
        self.threads = 0
        self.idle = 0


def _nothing() -> None:
    return None


_publishers = _Publishers()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_publishers.forget)
