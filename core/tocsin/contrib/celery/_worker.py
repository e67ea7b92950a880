"""The worker side: :func:`install` registers the one task, ``tocsin.deliver``, which
loads the plugins once per worker process, checks and resolves each message, decodes
it, calls the receiver, and retries it as its policy says."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from celery.exceptions import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
    Reject,
)
from celery.signals import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
    task_prerun,
    worker_init,
    worker_process_init,
)

from tocsin._errors import (
    DeferredConfigurationError,
    DeferredDecodeError,
    MissingInstanceError,
)
from tocsin.contrib.celery._codec_registry import codecs
from tocsin.contrib.celery._codecs import JSON, MAX_DEPTH, DecodeContext, dump_json
from tocsin.contrib.celery._directory import Deliverable, connected_for, resolve
from tocsin.contrib.celery._message import Message, Rejection

if TYPE_CHECKING:  # importing it imports pluggy, which a sending process may never need
    from tocsin._manager import PluginManager

#: The logger of the whole package, under the name users configure.
logger = logging.getLogger("tocsin.contrib.celery")

#: The name of the one Celery task that delivers every deferred receiver's messages.
TASK_NAME = "tocsin.deliver"

#: Content types that deserialize to arbitrary objects; an app accepting one is refused.
UNSAFE_CONTENT = frozenset(
    {
        "pickle",
        "application/x-python-serialize",
        "yaml",
        "application/x-yaml",
        "application/yaml",
        "text/yaml",
    }
)


@dataclass
class _Install:
    """What :func:`install` made for one app: its task, and the plugins it loads."""

    task: Any
    plugins: PluginManager | None


#: Guards :data:`_installs` and the worker hook: senders install from any thread.
_install_lock = threading.RLock()
#: The install of each app, dropped with the app.
_installs: weakref.WeakKeyDictionary[Any, _Install] = weakref.WeakKeyDictionary()
#: Guards :data:`_plugins_loaded`: a worker's threads may all get a first message at once.
_plugins_lock = threading.Lock()
#: id(manager) -> the pid that loaded it; a forked child's pid differs, so it loads again.
_plugins_loaded: dict[int, int] = {}
#: Whether :func:`_on_worker_process_init` is connected to Celery's signal yet.
_worker_hook_connected = False


def install(app: Any, *, plugins: PluginManager | bool = True) -> Any:
    """Register the ``tocsin.deliver`` task on the Celery *app* (once) and return it.

    Call it in the worker's app module.  ``plugins``: the plugin manager the worker
    loads once per process (True: ``tocsin.plugins``; False: none, when the app module
    connects every deferred receiver itself).  Raises
    :class:`DeferredConfigurationError` if the app accepts pickle or YAML messages.
    Deferred receivers install themselves on the app they send with, so the sending
    side needs no call.
    """
    with _install_lock:
        record = _installs.get(app)
        if record is not None:
            return record.task
        _check_content(app)
        manager: PluginManager | None
        if plugins is True:
            import tocsin

            manager = tocsin.plugins
        elif plugins is False:
            manager = None
        else:
            manager = plugins
        task = app.task(
            name=TASK_NAME,
            bind=True,
            shared=False,
            serializer="json",
            acks_late=True,
            reject_on_worker_lost=True,
            max_retries=None,
            typing=False,
        )(_deliver)
        _installs[app] = _Install(task, manager)
        _connect_worker_hook()
    return task


def _check_content(app: Any) -> None:
    conf = app.conf
    for setting in ("accept_content", "result_accept_content"):
        accepted = conf.get(setting)
        if accepted is None:
            continue
        if isinstance(accepted, str):
            accepted = [accepted]
        unsafe = sorted({str(c).lower() for c in accepted} & UNSAFE_CONTENT)
        if unsafe:
            raise DeferredConfigurationError(
                f"Celery app {app.main!r} has {setting}={list(accepted)!r}, which admits "
                f"{', '.join(unsafe)}: a message from the broker could then run code in the "
                f"worker. tocsin's deferred receivers only work with apps that accept JSON "
                f"(Celery's default: accept_content=['json'])."
            )


def _connect_worker_hook() -> None:
    global _worker_hook_connected
    if not _worker_hook_connected:
        worker_init.connect(_on_worker_init, weak=False)
        worker_process_init.connect(_on_worker_process_init, weak=False)
        task_prerun.connect(_on_task_prerun, weak=False)
        _worker_hook_connected = True


def _on_worker_init(sender: Any = None, **kwargs: Any) -> None:
    """When a worker starts: check again what :func:`install` checked.  A setting
    changed since (``accept_content`` with pickle added after ``install()``) would let
    a message run code in this worker as Celery decodes it, before any task sees it;
    so the worker does not start.  Celery logs and swallows an Exception raised by a
    signal handler, hence SystemExit, with the reason."""
    app = getattr(sender, "app", None)
    with _install_lock:
        installed = app in _installs if app is not None else False
    if not installed:
        return
    try:
        _check_content(app)
    except DeferredConfigurationError as error:
        logger.critical("Not starting the worker: %s", error)
        raise SystemExit(f"tocsin: not starting the Celery worker: {error}") from None


def _on_task_prerun(**kwargs: Any) -> None:
    """Between tasks: apply a change of the shared plugin state (issue 17), if one is
    configured and a check is due (rate-limited; nothing to do otherwise)."""
    from tocsin.state import check

    check()


def _on_worker_process_init(**kwargs: Any) -> None:
    with _install_lock:
        managers = {id(r.plugins): r.plugins for r in _installs.values() if r.plugins is not None}
    for manager in managers.values():
        _load_plugins(manager)


def _load_plugins(manager: PluginManager) -> None:
    """``manager.load()`` once per process (a forked child loads again: new plugins only)."""
    pid = os.getpid()
    if _plugins_loaded.get(id(manager)) == pid:
        return
    with _plugins_lock:
        if _plugins_loaded.get(id(manager)) == pid:
            return
        try:
            enabled = manager.load()
        except Exception:
            logger.exception("Loading tocsin plugins in worker process %d failed.", pid)
        else:
            logger.info("Worker process %d: tocsin plugins enabled: %s.", pid, enabled or "none")
        _plugins_loaded[id(manager)] = pid


def _deliver(task: Any, envelope: Any) -> JSON:
    """The ``tocsin.deliver`` task: check, resolve, decode, call; retry on failure."""
    request = task.request
    message_id = cast(str, request.id)
    attempt = _attempt(request, message_id)
    record = _installs.get(task.app)
    if not request.is_eager and record is not None and record.plugins is not None:
        _load_plugins(record.plugins)
    try:
        message = Message(envelope)
        found = resolve(message.signal, message.receiver)
        if found is None:
            raise Rejection(
                f"no deferred receiver {message.receiver!r} is connected to a signal named "
                f"{message.signal!r} in this worker"
            )
    except Rejection as error:
        logger.error("Rejected tocsin message %s: %s.", message_id, error)
        raise Reject(str(error), requeue=False) from None
    proxy, signal = found
    context = DecodeContext(codecs)
    try:
        try:
            sender = context.decode(message.sender)
            if not connected_for(proxy, signal, sender):
                # The sender filter, as the send applies it: a message for a receiver
                # connected with sender=Shop cannot run it for another sender.
                raise Rejection(
                    f"{proxy.identity} is not connected to {message.signal!r} for the "
                    f"sender {dump_json(message.sender)} in this worker"
                )
            named = {key: context.decode(value) for key, value in message.named.items()}
        except MissingInstanceError:
            raise  # a row not there (yet): retried like a failure of the receiver
        except (DeferredDecodeError, RecursionError, Rejection) as error:
            logger.error(
                "Rejected tocsin message %s for %s (signal %r): %s",
                message_id,
                proxy.identity,
                message.signal,
                error,
            )
            raise Reject(str(error), requeue=False) from None
        result = proxy.func(
            signal=signal,
            sender=sender,
            tocsin_message_id=message_id,
            tocsin_attempt=attempt,
            **named,
        )
        if proxy.is_async:
            result = asyncio.run(result)
    except Reject:
        raise
    except Exception as error:
        retry = _retry(task, proxy, message, error)
        if retry is None:
            raise
        raise retry from error
    finally:
        context.close()
    return _plain(result)


def _attempt(request: Any, message_id: str) -> int:
    """The attempt number (0 the first time) the message carries, as Celery counts it;
    one that is not an int from 0 up is forged or damaged, and counts from 0 again.
    ``request.retries`` is set to it, since a retry publishes that number plus one:
    so the receiver's policy alone bounds the attempts (a message saying
    ``retries=-20`` would otherwise make 23 where the policy says 3)."""
    retries = request.retries
    if type(retries) is int and retries >= 0:
        return retries
    logger.warning(
        "tocsin message %s carries retries=%r, which no sender makes; counting its "
        "attempts from 0.",
        message_id,
        retries,
    )
    request.retries = 0
    return 0


def _retry(task: Any, proxy: Deliverable, message: Message, error: Exception) -> Any:
    """Celery's ``Retry`` for *error* if the receiver's policy retries it; else log the
    final failure and return None."""
    request = task.request
    retries = int(request.retries or 0)
    policy = proxy.retry_policy
    if policy.should_retry(error, retries):
        countdown = policy.countdown(retries)
        logger.warning(
            "Deferred receiver %s (signal %r, message %s) failed on attempt %d: %r; "
            "retrying in %.2fs.",
            proxy.identity,
            message.signal,
            request.id,
            retries + 1,
            error,
            countdown,
        )
        # Re-sends the message (same id, retries + 1) after countdown; raises Reject
        # if that cannot be published.
        return task.retry(exc=error, countdown=countdown, throw=False)
    logger.error(
        "Deferred receiver %s gave up after %d attempt(s): signal %r, message %s, "
        "sender %s, arguments %s: %s: %s",
        proxy.identity,
        retries + 1,
        message.signal,
        request.id,
        dump_json(message.sender),
        dump_json(message.named),
        type(error).__name__,
        error,
        exc_info=error,
    )
    return None


def _plain(value: Any, depth: int = 0) -> JSON:
    """*value* if it is plain JSON (for the result backend), else None."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return cast(JSON, value)
    if depth > MAX_DEPTH:
        return None
    if kind is list and all(_plain(v, depth + 1) is v for v in value):
        return cast(JSON, value)
    if (
        kind is dict
        and all(type(k) is str for k in value)
        and all(_plain(v, depth + 1) is v for v in value.values())
    ):
        return cast(JSON, value)
    return None
