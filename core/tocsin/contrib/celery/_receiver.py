"""The sending side: :func:`deferred` wraps a function into a :class:`DeferredReceiver`,
an ordinary receiver to the core that enqueues the task when a send reaches it, and
:func:`connect_deferred` connects one without the decorator."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import types
import uuid
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Literal, cast, overload

from celery import current_app  # type: ignore[import-untyped, import-not-found, unused-ignore]

from tocsin._errors import DeferredConfigurationError, DeferredEncodeError
from tocsin._signal import ReceiverMark, Signal
from tocsin.contrib.celery._codec_registry import codecs
from tocsin.contrib.celery._codecs import JSON, Unencodable, dump_json
from tocsin.contrib.celery._directory import register_receiver
from tocsin.contrib.celery._message import MESSAGE_VERSION, RESERVED_ARGUMENTS, argsrepr
from tocsin.contrib.celery._publish import check_publish_timeout, publish, publish_timeout_of
from tocsin.contrib.celery._retry import RetryPolicy
from tocsin.contrib.celery._transactions import (
    after_django_commit,
    after_sqlalchemy_commit,
    django_alias,
    sqlalchemy_session,
)
from tocsin.contrib.celery._worker import TASK_NAME, install

#: The logger of the whole package, under the name users configure.
logger = logging.getLogger("tocsin.contrib.celery")

#: The keywords of :class:`RetryPolicy`, which ``deferred()`` refuses with a hint.
_RETRY_OPTIONS = frozenset(field.name for field in dataclasses.fields(RetryPolicy))

#: What ``on_commit=`` takes: wait for any transaction found, for one kind, or not.
OnCommit = bool | Literal["sqlalchemy", "django"]


class DeferredReceiver:
    """A receiver that enqueues a Celery task instead of running its function.

    Made by :func:`deferred`; connect it like any receiver.  Calling it (as a send
    does) returns the task's ``AsyncResult``.  ``func`` is the wrapped function,
    ``identity`` the name messages use for it, ``retry_policy`` its
    :class:`RetryPolicy`, ``publish_timeout`` its own limit on publishing (None: the
    app's ``tocsin_publish_timeout``, else 10 s).
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        app: Any = None,
        name: str | None = None,
        retry_policy: RetryPolicy | None = None,
        on_commit: OnCommit = False,
        session: Any = None,
        queue: str | None = None,
        options: Mapping[str, Any] | None = None,
        publish_timeout: float | None = None,
        outbox: bool = False,
    ) -> None:
        _check_deferrable(func)
        self.publish_timeout = check_publish_timeout(publish_timeout, "publish_timeout")
        if on_commit not in (True, False, "sqlalchemy", "django"):
            raise ValueError(
                f"on_commit must be True, False, 'sqlalchemy' or 'django', not {on_commit!r}."
            )
        if session is not None and on_commit not in (True, "sqlalchemy"):
            raise ValueError("session= is only used with on_commit=True or 'sqlalchemy'.")
        if outbox not in (True, False):
            raise ValueError(f"outbox must be True or False, not {outbox!r}.")
        if outbox and not on_commit:
            raise ValueError(
                "outbox=True writes the message in the sender's transaction: use it with "
                "on_commit=True, 'sqlalchemy' or 'django'."
            )
        functools.update_wrapper(self, func, updated=())
        self.func = func
        self.identity = name if name is not None else f"{func.__module__}:{func.__qualname__}"
        if not isinstance(self.identity, str) or not self.identity:
            raise TypeError(f"name must be a non-empty str, not {name!r}.")
        self.app = app
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.on_commit = on_commit
        self.session = session
        self.is_async = inspect.iscoroutinefunction(func)
        publish = dict(options or {})
        if queue is not None:
            publish["queue"] = queue
        for reserved in ("task_id", "args", "kwargs", "serializer", "argsrepr"):
            if reserved in publish:
                raise ValueError(f"options may not set {reserved!r}; tocsin sets it.")
        publish.setdefault("shadow", f"{TASK_NAME}:{self.identity}")
        self.options: Mapping[str, Any] = types.MappingProxyType(publish)
        self.outbox = bool(outbox)
        if self.outbox:
            try:
                json.dumps(publish)
            except (TypeError, ValueError):
                raise ValueError(
                    f"outbox=True stores the publish options as JSON; these are not: {publish!r}."
                ) from None
        self._signals: weakref.WeakSet[Signal] = weakref.WeakSet()
        self._marks: list[ReceiverMark] = []
        self._task: tuple[Any, Any] | None = None
        register_receiver(self)

    def __repr__(self) -> str:
        return f"<DeferredReceiver {self.identity}>"

    # @receiver sets this attribute on what it decorates; the plugin manager reads it.
    # Setting it is how a deferred receiver learns the signals it will be found under.
    @property
    def __tocsin_receivers__(self) -> list[ReceiverMark]:
        return list(self._marks)

    @__tocsin_receivers__.setter
    def __tocsin_receivers__(self, marks: Iterable[ReceiverMark]) -> None:
        marks = list(marks)
        for mark in marks:
            self.bind(mark.signal)
        self._marks = marks

    def bind(self, signal: Signal) -> None:
        """Let workers find this receiver under *signal*'s name.

        ``@receiver`` and :func:`connect_deferred` do it; call it yourself only after
        connecting with a bare ``signal.connect(proxy)``.
        """
        if not isinstance(signal, Signal):
            raise TypeError(f"bind() takes a Signal, not {signal!r}.")
        if not signal.name:
            raise DeferredConfigurationError(
                f"{signal!r} has no name, so a worker could not tell which signal a "
                f"message for {self.identity} is about; give it one: "
                f"Signal(..., name='app.something_happened')."
            )
        self._signals.add(signal)

    @property
    def signals(self) -> list[Signal]:
        """The signals workers may find this receiver under (connected or not)."""
        return list(self._signals)

    def __call__(self, *, signal: Signal, sender: Any, **named: Any) -> Any:
        if signal not in self._signals:
            raise DeferredConfigurationError(
                f"Deferred receiver {self.identity} was connected to {signal!r} without "
                f"@receiver or connect_deferred(), so no worker would find it under that "
                f"signal; connect it with one of those, or call .bind(signal) once."
            )
        envelope = self.envelope(signal, sender, named)
        app, task = self._resolve_task()
        if self.outbox:
            return self._write_outbox(app, task, envelope, sender, named)
        if self.on_commit:
            schedule = self._transaction(sender, named)
            if schedule is not None:
                task_id = str(uuid.uuid4())
                schedule(functools.partial(self._publish_later, task, envelope, task_id))
                return app.AsyncResult(task_id)
        return self._publish(app, task, envelope, {})

    def _publish(
        self,
        app: Any,
        task: Any,
        envelope: dict[str, JSON],
        options: Mapping[str, Any],
        on_late: Callable[[BaseException | None], None] | None = None,
    ) -> Any:
        """Enqueue *envelope*, within the publish timeout (see ``_publish``)."""
        return publish(
            task,
            (envelope,),
            {"argsrepr": argsrepr(envelope), **options, **self.options},
            timeout=publish_timeout_of(self.publish_timeout, app),
            identity=self.identity,
            signal=cast(str, envelope["signal"]),
            on_late=on_late,
        )

    def envelope(self, signal: Signal, sender: Any, named: Mapping[str, Any]) -> dict[str, JSON]:
        """The JSON message for one send; :class:`DeferredEncodeError` if it cannot be made."""
        encode = codecs.encode
        try:
            encoded_sender = encode(sender)
        except Unencodable as error:
            raise self._encode_error(signal, "the sender", error) from None
        encoded: dict[str, JSON] = {}
        for key, value in named.items():
            if key in RESERVED_ARGUMENTS:
                raise DeferredEncodeError(
                    f"Cannot defer {self.identity} for {signal!r}: argument {key!r} is "
                    f"reserved for the worker's call (tocsin_message_id, tocsin_attempt).",
                    key,
                    type(value),
                )
            try:
                encoded[key] = encode(value)
            except Unencodable as error:
                raise self._encode_error(signal, key, error) from None
        return {
            "tocsin": MESSAGE_VERSION,
            "signal": cast(str, signal.name),
            "receiver": self.identity,
            "sender": encoded_sender,
            "named": encoded,
        }

    def _encode_error(
        self, signal: Signal, argument: str, error: Unencodable
    ) -> DeferredEncodeError:
        path = argument + "".join(error.path)
        what = path if argument == "the sender" else f"argument {path!r}"
        kind = type(error.value)
        reason = error.reason or (
            f"no codec takes {kind.__module__}.{kind.__qualname__} values; register one "
            f"with tocsin.contrib.celery.register_codec()"
        )
        return DeferredEncodeError(
            f"Cannot defer {self.identity} for {signal!r}: {what} (a {kind.__qualname__}) "
            f"cannot travel as JSON: {reason}.",
            path,
            kind,
        )

    def _resolve_task(self) -> tuple[Any, Any]:
        app = self.app if self.app is not None else current_app._get_current_object()
        cached = self._task
        if cached is not None and cached[0] is app:
            return cached
        cached = (app, install(app))
        self._task = cached
        return cached

    def _publish_later(self, task: Any, envelope: dict[str, JSON], task_id: str) -> None:
        try:
            self._publish(task.app, task, envelope, {"task_id": task_id})
        except Exception:
            logger.exception(
                "Could not enqueue deferred receiver %s for signal %r after the transaction "
                "committed (message %s); the delivery is lost. Message: %s",
                self.identity,
                envelope["signal"],
                task_id,
                dump_json(envelope),
            )

    def _write_outbox(
        self,
        app: Any,
        task: Any,
        envelope: dict[str, JSON],
        sender: Any,
        named: Mapping[str, Any],
    ) -> Any:
        """INSERT the message into the outbox in the sender's transaction (SQLAlchemy's
        or Django's, found as ``on_commit`` finds it); publish it once that commits (see
        :mod:`tocsin.contrib.celery.outbox`)."""
        # Imported here: deferred receivers without the outbox need none of it (its
        # settler thread, atexit and fork hooks, socket/random/uuid at import time).
        from tocsin.contrib.celery._outbox_common import broker_resting, sender_claim_seconds

        message_id = str(uuid.uuid4())
        # A broker that failed a publish lately rests: the row is left to the relay.
        resting = broker_resting(app)
        claim = (
            None if resting else sender_claim_seconds(publish_timeout_of(self.publish_timeout, app))
        )
        mode = self.on_commit
        session = None
        if mode is True or mode == "sqlalchemy":
            session = sqlalchemy_session(self.session, sender, named)
        if session is not None:
            from tocsin.contrib.celery import outbox

            connection = session.connection()  # begins the session's transaction if need be
            token = outbox.insert_message(
                connection,
                message_id=message_id,
                task_name=TASK_NAME,
                envelope=envelope,
                options=self.options,
                claim_seconds=claim,
            )
            store: Any = outbox.SQLAlchemyOutbox(connection.engine)
            schedule = functools.partial(after_sqlalchemy_commit, session)
        else:
            alias = django_alias(sender, named) if mode != "sqlalchemy" else None
            if alias is None:
                raise self._no_outbox_transaction()
            from tocsin.contrib.celery.django_outbox import DjangoOutbox

            store = DjangoOutbox(alias)
            token = store.insert_message(
                message_id=message_id,
                task_name=TASK_NAME,
                envelope=envelope,
                options=self.options,
                claim_seconds=claim,
                receiver=self.identity,
            )
            schedule = functools.partial(after_django_commit, alias)
        if token is not None:
            schedule(
                functools.partial(self._publish_outboxed, task, envelope, message_id, token, store)
            )
        return app.AsyncResult(message_id)

    def _no_outbox_transaction(self) -> DeferredConfigurationError:
        """The error for an outboxed send that belongs to no transaction tocsin knows."""
        session_hint = "pass session= to deferred()"
        if self.on_commit == "sqlalchemy":
            kind = "SQLAlchemy "
            found = f"the send carries no instance in a session: {session_hint}"
        elif self.on_commit == "django":
            kind, found = "Django ", "Django is not configured"
        else:
            kind = ""
            found = (
                f"the send carries no instance in a SQLAlchemy session ({session_hint}) "
                f"and Django is not configured"
            )
        return DeferredConfigurationError(
            f"{self.identity} writes to the outbox in the sender's {kind}transaction, but {found}."
        )

    def _publish_outboxed(
        self, task: Any, envelope: dict[str, JSON], message_id: str, token: str, store: Any
    ) -> None:
        from tocsin.contrib.celery._outbox_common import publish_outboxed

        publish_outboxed(
            store,
            lambda on_late: self._publish(
                task.app, task, envelope, {"task_id": message_id}, on_late=on_late
            ),
            app=task.app,
            identity=self.identity,
            signal=cast(str, envelope["signal"]),
            message_id=message_id,
            token=token,
        )

    def _transaction(
        self, sender: Any, named: Mapping[str, Any]
    ) -> Callable[[Callable[[], None]], None] | None:
        """How to run a callback once the sender's transaction commits; None: now."""
        mode = self.on_commit
        if mode is True or mode == "sqlalchemy":
            session = sqlalchemy_session(self.session, sender, named)
            if session is not None:
                return functools.partial(after_sqlalchemy_commit, session)
            if mode == "sqlalchemy":
                raise DeferredConfigurationError(
                    f"{self.identity} defers to the SQLAlchemy commit, but the send carries "
                    f"no instance in a session: pass session= to deferred()."
                )
        alias = django_alias(sender, named)
        if alias is not None:
            return functools.partial(after_django_commit, alias)
        if mode == "django":
            raise DeferredConfigurationError(
                f"{self.identity} defers to the Django commit, but Django is not configured."
            )
        return None


def _check_deferrable(func: Any) -> None:
    if isinstance(func, DeferredReceiver):
        raise TypeError(f"{func!r} is already deferred.")
    if not callable(func):
        raise TypeError(f"deferred() takes a function, not {func!r}.")
    if not isinstance(func, types.FunctionType):
        raise TypeError(
            f"deferred() takes a plain function (a worker finds it by module and name), "
            f"not {type(func).__name__} {func!r}."
        )
    if getattr(func, "__tocsin_receivers__", None):
        raise TypeError(
            f"{func.__qualname__} is already connected by @receiver, in this process: "
            f"put @deferred(...) below @receiver(...), next to the function."
        )
    owner = func.__qualname__.rpartition(".")[0]
    if owner and not owner.endswith("<locals>"):
        raise TypeError(
            f"deferred() cannot wrap the method {func.__qualname__}: a worker could not "
            f"rebuild its instance. Defer a module-level function instead."
        )


@overload
def deferred(
    func: Callable[..., Any],
    *,
    app: Any = None,
    name: str | None = None,
    on_commit: OnCommit = False,
    session: Any = None,
    retry: RetryPolicy | None = None,
    queue: str | None = None,
    options: Mapping[str, Any] | None = None,
    publish_timeout: float | None = None,
    outbox: bool = False,
) -> DeferredReceiver: ...


@overload
def deferred(
    func: None = None,
    *,
    app: Any = None,
    name: str | None = None,
    on_commit: OnCommit = False,
    session: Any = None,
    retry: RetryPolicy | None = None,
    queue: str | None = None,
    options: Mapping[str, Any] | None = None,
    publish_timeout: float | None = None,
    outbox: bool = False,
) -> Callable[[Callable[..., Any]], DeferredReceiver]: ...


def deferred(
    func: Callable[..., Any] | None = None,
    *,
    app: Any = None,
    name: str | None = None,
    on_commit: OnCommit = False,
    session: Any = None,
    retry: RetryPolicy | None = None,
    queue: str | None = None,
    options: Mapping[str, Any] | None = None,
    publish_timeout: float | None = None,
    outbox: bool = False,
    **unexpected: Any,
) -> DeferredReceiver | Callable[[Callable[..., Any]], DeferredReceiver]:
    """Make *func* a receiver that runs in a Celery worker; use as ``@deferred(...)``.

    Put it below ``@receiver(...)``.  ``app``: the Celery app (default: Celery's
    current app when a send happens).  ``name``: the identity messages use (default
    ``"module:qualname"``).  ``on_commit``: enqueue only once the sender's transaction
    commits, and never if it rolls back — ``True`` finds the SQLAlchemy session of a
    mapped instance among the sender and arguments (or uses ``session=``: a session,
    a ``scoped_session`` or a callable returning one), else uses Django's
    ``transaction.on_commit`` if Django is configured, else enqueues at once;
    ``"sqlalchemy"`` and ``"django"`` insist on one.  ``retry``: when a failure is
    tried again, a :class:`RetryPolicy` (default ``RetryPolicy()``: three retries,
    with exponential backoff and jitter).  ``queue`` and ``options`` go to
    ``apply_async``.  ``publish_timeout``: how long a send waits for the broker to take
    the message before it raises :class:`DeferredPublishError` (default: the app's
    ``tocsin_publish_timeout`` setting, else 10 s; ``math.inf``: no limit).
    ``outbox``: with ``on_commit``, write the message to the ``tocsin_outbox`` table
    in the sender's transaction (SQLAlchemy's or Django's, found as ``on_commit``
    finds it) and publish it after the commit; what the broker does not take then
    stays there for the relay (:mod:`tocsin.contrib.celery.outbox`; with Django,
    :mod:`tocsin.contrib.celery.django_outbox`).  Any
    other keyword raises TypeError; one of RetryPolicy's says to pass it as
    ``retry=RetryPolicy(...)``.
    """
    if unexpected:
        raise _unexpected_keywords(unexpected)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"deferred(retry=...) takes a RetryPolicy, not {retry!r}.")

    def wrap(target: Callable[..., Any]) -> DeferredReceiver:
        return DeferredReceiver(
            target,
            app=app,
            name=name,
            retry_policy=retry,
            on_commit=on_commit,
            session=session,
            queue=queue,
            options=options,
            publish_timeout=publish_timeout,
            outbox=outbox,
        )

    return wrap if func is None else wrap(func)


def _unexpected_keywords(unexpected: Mapping[str, Any]) -> TypeError:
    """The error for keywords :func:`deferred` does not take, with the way to pass
    retry options, which it took as keywords of its own before ``retry=``."""
    retry_options = [key for key in unexpected if key in _RETRY_OPTIONS]
    if retry_options:
        given = ", ".join(f"{key}={unexpected[key]!r}" for key in retry_options)
        return TypeError(
            f"deferred() takes its retry options in a RetryPolicy: pass "
            f"retry=RetryPolicy({given}) instead of {given}."
        )
    return TypeError(f"deferred() got an unexpected keyword argument {next(iter(unexpected))!r}.")


def connect_deferred(
    signal: Signal,
    func: Callable[..., Any] | DeferredReceiver,
    sender: Any = None,
    weak: bool = False,
    dispatch_uid: Hashable | None = None,
    *,
    priority: int = 0,
    **options: Any,
) -> DeferredReceiver:
    """Connect *func* to *signal* as a deferred receiver; returns the proxy connected.

    *func* is a function (wrapped with ``deferred(func, **options)``) or a proxy
    :func:`deferred` made.  ``weak`` defaults to False here, unlike
    ``Signal.connect``: nothing else may hold the proxy made for you; disconnect it
    with ``signal.disconnect(proxy)``.
    """
    if isinstance(func, DeferredReceiver):
        if options:
            raise TypeError("Options go to deferred(); this receiver is already deferred.")
        proxy = func
    else:
        proxy = deferred(func, **options)
    proxy.bind(signal)
    signal.connect(proxy, sender, weak, dispatch_uid, priority=priority)
    return proxy
