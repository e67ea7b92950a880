"""Signal and receiver: Django's dispatch semantics, sync and async, without Django.

A :class:`Signal` is the public face: connect, disconnect, send and its variants.  Its
connections live in a :class:`~tocsin._registry.Registry`, which decides at connect
time everything a send needs (weak or strong, async or not, order) and caches an
immutable tuple of receivers per sender.  The hot path, ``send``, is in
:mod:`tocsin._send` (and in C where it was built); this module holds the rest: the
slow path it falls back to, ``send_robust``, ``asend`` and ``asend_robust``.
"""

from __future__ import annotations

import contextvars
import logging
import types
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, overload

from tocsin._errors import AsyncReceiversInLoopError
from tocsin._prototype import read_prototype
from tocsin._refs import Holder, describe
from tocsin._registry import Plan, Registry, validate_options, validate_receiver
from tocsin._send import COMPILED, PureSendCore, Responses

if TYPE_CHECKING:
    # Type checkers see the pure class, which declares what the C one implements.
    from typing_extensions import ParamSpec

    from tocsin._send import PureSendCore as SendCore

    P = ParamSpec("P", default=...)
else:
    from typing import ParamSpec

    from tocsin._send import SendCore

    P = ParamSpec("P")

__all__ = [
    "ReceiverMark",
    "Signal",
    "TypedSignal",
    "declared_receivers",
    "in_class_body",
    "receiver",
    "sending_method",
]

logger = logging.getLogger("tocsin.dispatch")

ReceiverT = TypeVar("ReceiverT", bound=Callable[..., Any])
ResultT = TypeVar("ResultT")
ArgsT = ParamSpec("ArgsT")


#: While a plugin manager imports a plugin, the ``(function, marks)`` pairs that
#: ``@receiver`` declares are appended here, so the manager can tell exactly what the
#: import connected, and undo it if the import fails half-way.
declared_receivers: contextvars.ContextVar[
    list[tuple[Callable[..., Any], list[ReceiverMark]]] | None
] = contextvars.ContextVar("tocsin_declared_receivers", default=None)


class ReceiverMark(NamedTuple):
    """What ``@receiver`` recorded on a function: one connection it asked for.

    The plugin manager reads these marks to know which connections a plugin owns,
    so it can disconnect and restore exactly those.
    """

    signal: Signal
    sender: Any
    weak: bool
    dispatch_uid: Hashable | None
    priority: int


class Signal(SendCore):
    """A named event that receivers connect to and senders send.

    ``providing_args`` documents the arguments senders pass (Django's original form;
    shown by the CLI and checked by ``tocsin doctor``).  ``use_caching`` is accepted for
    compatibility with Django: tocsin always caches receivers per sender, correctly
    for every kind of sender.  ``name`` is used in messages and ``repr``; a signal
    declared as a class attribute is named after it when no name is given.
    """

    # Slots, so that connect and disconnect read their state as fast whether SendCore is
    # the C type or the pure one: under a C base class, CPython leaves reads from an
    # instance dict unspecialised (three times slower on 3.11).  __dict__ stays, for
    # whatever else is set on a signal (a typed signal's __doc__, say).
    __slots__ = ("__dict__", "__weakref__", "name", "providing_args", "registry", "use_caching")

    def __init__(
        self,
        providing_args: Iterable[str] | None = None,
        use_caching: bool = False,
        name: str | None = None,
    ) -> None:
        if isinstance(providing_args, str):
            raise TypeError(
                f"providing_args must be a list of argument names, not the string "
                f"{providing_args!r}; write providing_args=[{providing_args!r}]."
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Signal name must be a str or None, not {type(name).__name__}.")
        args = tuple(providing_args) if providing_args is not None else ()
        for arg in args:
            if not isinstance(arg, str) or not arg.isidentifier():
                spelling = "".join(c if c.isalnum() else "_" for c in str(arg)).strip("_")
                if not spelling.isidentifier():
                    spelling = f"arg_{spelling}" if spelling else "argument"
                raise TypeError(
                    f"providing_args of Signal {name or '(unnamed)'!r} must name keyword "
                    f"arguments; {arg!r} is not a valid Python identifier. Use a name "
                    f"such as {spelling!r}."
                )
        self.providing_args: tuple[str, ...] = args
        self.use_caching = use_caching
        self.name = name
        #: The connection table (see :mod:`tocsin._registry`): tocsin's own interface
        #: for plugin managers and test tools, not needed to use a signal.
        self.registry = Registry(self)
        # The two tables the send reads, shared with the registry (which never
        # replaces them, only changes them in place).
        self._connections = self.registry.connections
        self._send_cache = self.registry.send_cache

    @classmethod
    def typed(cls, prototype: Callable[ArgsT, object]) -> TypedSignal[ArgsT]:
        """Decorator: a signal whose arguments are the prototype's parameters.

        Type checkers then reject a ``send()`` with a misspelled, missing or wrongly
        typed argument, and a receiver whose parameters do not fit::

            @Signal.typed
            def order_paid(sender: type[Shop], *, order: Order, amount: Decimal) -> None:
                "Sent when an order has been paid."

        The signal is named after the prototype (module and qualified name), its
        ``providing_args`` are the prototype's keyword parameters, its docstring is the
        prototype's.  At run time it is an ordinary :class:`Signal`.

        .. versionadded:: 0.1
        """
        name, arguments, doc = read_prototype(prototype)
        signal: TypedSignal[Any] = TypedSignal(providing_args=arguments, name=name)
        signal.prototype = prototype
        signal.__doc__ = doc
        return signal

    def __set_name__(self, owner: type, attribute: str) -> None:
        if self.name is None:
            self.name = f"{owner.__qualname__}.{attribute}"

    def __repr__(self) -> str:
        label = repr(self.name) if self.name else f"at {id(self):#x}"
        args = f" providing_args={list(self.providing_args)!r}" if self.providing_args else ""
        return f"<Signal {label}{args}>"

    # -- connecting -------------------------------------------------------------------

    def connect(
        self,
        receiver: ReceiverT | None = None,
        sender: Any = None,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
        *,
        priority: int = 0,
        fn: ReceiverT | None = None,
    ) -> ReceiverT:
        """Connect *receiver* to this signal and return it.

        The receiver is called as ``receiver(signal=self, sender=sender, **named)`` for
        sends from *sender* (any sender when None).  ``weak`` holds functions and bound
        methods weakly, so a collected receiver disconnects itself.  A second connect
        with the same receiver (or the same ``dispatch_uid``) and sender is ignored: the
        first connection wins.  Higher ``priority`` runs first; ties run in the order
        they were connected.  ``fn`` is an alias of ``receiver``.

        .. versionchanged:: 0.1 returns the receiver, so it can be used inline.
        """
        if receiver is None or fn is not None:
            receiver = _pick_receiver(receiver, fn, self, "connect")
        self.registry.connect(receiver, sender, weak, dispatch_uid, priority)
        return receiver

    def disconnect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: Any = None,
        dispatch_uid: Hashable | None = None,
        *,
        fn: Callable[..., Any] | None = None,
    ) -> bool:
        """Disconnect a receiver (or the one connected with ``dispatch_uid``) for *sender*.

        Returns True if a connection was removed, False if there was none.  A
        ``dispatch_uid`` never connected to this signal raises
        :class:`UnknownDispatchUidError`, since that is almost always a typo.
        """
        if fn is not None:
            receiver = _pick_receiver(receiver, fn, self, "disconnect")
        elif receiver is None and dispatch_uid is None:
            raise TypeError(
                f"{self!r}.disconnect() needs the receiver to disconnect, or the "
                f"dispatch_uid it was connected with."
            )
        return self.registry.disconnect(receiver, sender, dispatch_uid)

    def has_listeners(self, sender: Any = None) -> bool:
        """Whether a send from *sender* would reach at least one live receiver."""
        return self.registry.has_listeners(sender)

    @property
    def receivers(self) -> list[Callable[..., Any]]:
        """The live receivers, in the order they were connected (a snapshot list).

        Assigning an empty list disconnects every receiver, as Django test code does.
        """
        return self.registry.receivers()

    @receivers.setter
    def receivers(self, value: Sequence[Any]) -> None:
        if len(value):
            raise TypeError(
                f"Only an empty list can be assigned to {self!r}.receivers (it "
                f"disconnects every receiver); use connect() to add receivers."
            )
        self.registry.clear()

    # -- watching activity --------------------------------------------------------------

    def is_active(self) -> bool:
        """Whether any receiver is connected, for any sender.

        A receiver collected since the last connect or disconnect may still count.
        Cheaper than :meth:`has_listeners`, and meant for bridges that forward another
        library's signal only while someone here listens.
        """
        return bool(self._connections)

    def watch_activity(self, callback: Callable[[Signal], object]) -> None:
        """Call ``callback(signal)`` whenever the signal may have become active (its
        first receiver connected) or inactive (its last one removed).

        The callback runs in the thread that made the change, after the signal's lock
        is released; it may come late or twice, so it should read :meth:`is_active`
        under a lock of its own and act on that.  An exception it raises is logged.

        .. versionadded:: 0.1
        """
        self.registry.watch_activity(callback)

    def unwatch_activity(self, callback: Callable[[Signal], object]) -> None:
        """Stop calling a callback given to :meth:`watch_activity` (no error if absent)."""
        self.registry.unwatch_activity(callback)

    # -- sending ----------------------------------------------------------------------

    def send_robust(self, sender: Any, **named: Any) -> Responses:
        """Like :meth:`send`, but an ``Exception`` from a receiver becomes its response.

        Every receiver is called; each failure is logged at ERROR with its traceback
        under the ``tocsin.dispatch`` logger.
        """
        if not self._connections:
            return []
        holders = self._send_cache.get(id(sender))
        if holders is None:
            return self._send_slow(sender, named, robust=True)
        return self._call_robust(holders, sender, named)

    def _call_sync(
        self, holders: Iterable[Holder], sender: Any, named: dict[str, Any], robust: bool
    ) -> Responses:
        """Call synchronous receivers in order, off the hot path (slow path, asend)."""
        if robust:
            return self._call_robust(holders, sender, named)
        return [
            (r, r(signal=self, sender=sender, **named)) for h in holders if (r := h()) is not None
        ]

    def _call_robust(self, holders: Iterable[Holder], sender: Any, named: Any) -> Responses:
        responses: Responses = []
        for holder in holders:
            receiver = holder()
            if receiver is None:
                continue
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception as error:
                _log_failure(receiver, error)
                response = error
            responses.append((receiver, response))
        return responses

    def _send_slow(self, sender: Any, named: dict[str, Any], *, robust: bool) -> Responses:
        if self.registry.muted:
            return []
        plan = self.registry.plan_for(sender)
        if not plan.any_async:
            return self._call_sync(plan.holders, sender, named, robust)
        import asyncio  # imported on first use: it is most of what importing tocsin costs

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            # The cached plan may predate the collection of its last async receiver:
            # only live async receivers make send() impossible here.
            live_async = (
                is_async and holder() is not None
                for holder, is_async in zip(plan.holders, plan.is_async, strict=True)
            )
            if any(live_async):
                raise AsyncReceiversInLoopError(self._async_in_loop_message(plan, robust))
        responses, pending = self._start(plan, sender, named, robust)
        if pending:
            asyncio.run(_settle(responses, pending, robust))
        return responses

    def _async_in_loop_message(self, plan: Plan, robust: bool) -> str:
        names = [
            describe(r)
            for h, is_async in zip(plan.holders, plan.is_async, strict=True)
            if is_async and (r := h()) is not None
        ]
        method = "asend_robust" if robust else "asend"
        return (
            f"{self!r} has async receivers ({', '.join(names)}), which "
            f"send{'_robust' if robust else ''}() cannot run inside a running event loop. "
            f"Use 'await signal.{method}(sender, ...)' instead. No receiver was called."
        )

    def _start(
        self, plan: Plan, sender: Any, named: dict[str, Any], robust: bool
    ) -> tuple[Responses, list[tuple[int, Callable[..., Any], Awaitable[Any]]]]:
        """Call every receiver in order; sync ones finish, async ones leave awaitables."""
        responses: Responses = []
        pending: list[tuple[int, Callable[..., Any], Awaitable[Any]]] = []
        for holder, is_async in zip(plan.holders, plan.is_async, strict=True):
            receiver = holder()
            if receiver is None:
                continue
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception as error:
                if not robust:
                    _close_all(pending)
                    raise
                _log_failure(receiver, error)
                response = error
            else:
                if is_async:
                    pending.append((len(responses), receiver, response))
            responses.append((receiver, response))
        return responses, pending

    async def asend(self, sender: Any, **named: Any) -> Responses:
        """Call every receiver for *sender* from inside an event loop.

        Sync receivers are called in order, in the loop's thread; async receivers run
        concurrently.  Responses come back in dispatch order.  A receiver's exception
        propagates.
        """
        return await self._asend(sender, named, robust=False)

    async def asend_robust(self, sender: Any, **named: Any) -> Responses:
        """Like :meth:`asend`, but an ``Exception`` from a receiver becomes its response."""
        return await self._asend(sender, named, robust=True)

    async def _asend(self, sender: Any, named: dict[str, Any], robust: bool) -> Responses:
        if not self._connections or self.registry.muted:
            return []
        plan = self.registry.plan_for(sender)
        if not plan.any_async:
            return self._call_sync(plan.holders, sender, named, robust)
        responses, pending = self._start(plan, sender, named, robust)
        if pending:
            await _settle(responses, pending, robust)
        return responses

    # -- conveniences -----------------------------------------------------------------

    @contextmanager
    def connected_to(
        self,
        receiver: ReceiverT,
        sender: Any = None,
        *,
        dispatch_uid: Hashable | None = None,
        priority: int = 0,
    ) -> Iterator[ReceiverT]:
        """Connect *receiver* (strongly) for the duration of a ``with`` block.

        A receiver that was already connected stays connected afterwards.
        """
        connection = self.registry.connect(receiver, sender, False, dispatch_uid, priority)
        try:
            yield receiver
        finally:
            if connection is not None:
                connection.drop()

    @contextmanager
    def muted(self) -> Iterator[Signal]:
        """Within the block, sends of this signal (from any thread) call no receiver."""
        with self.registry.muting():
            yield self


async def _settle(
    responses: Responses,
    pending: list[tuple[int, Callable[..., Any], Awaitable[Any]]],
    robust: bool,
) -> None:
    """Await the async receivers' awaitables concurrently, filling in their responses."""
    import asyncio

    if robust:
        results = await asyncio.gather(*(_guard(receiver, aw) for _, receiver, aw in pending))
    else:
        results = await asyncio.gather(*(aw for _, _, aw in pending))
    for (index, receiver, _), result in zip(pending, results, strict=True):
        responses[index] = (receiver, result)


async def _guard(receiver: Callable[..., Any], awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except Exception as error:
        _log_failure(receiver, error)
        return error


def _close_all(pending: list[tuple[int, Callable[..., Any], Awaitable[Any]]]) -> None:
    # Coroutines created but never awaited would warn "never awaited"; close them.
    for _, _, awaitable in pending:
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()


def _log_failure(receiver: Callable[..., Any], error: Exception) -> None:
    # One message for send_robust and asend_robust alike, as the contract (and Django,
    # whose asend_robust logs the same text) has it: log filters match on it.
    logger.error(
        "Error calling %s in Signal.send_robust() (%s)", describe(receiver), error, exc_info=error
    )


def _pick_receiver(
    receiver: ReceiverT | None, fn: ReceiverT | None, signal: Signal, method: str
) -> ReceiverT:
    if receiver is None:
        if fn is None:
            raise TypeError(f"{signal!r}.{method}() missing the receiver to connect.")
        return fn
    if fn is not None and fn is not receiver:
        raise TypeError(f"{signal!r}.{method}() got both receiver and fn; pass one of them.")
    return receiver


@overload
def receiver(  # type: ignore[overload-overlap]  # a typed signal is checked first
    signal: TypedSignal[ArgsT],
    *,
    sender: Any = None,
    weak: bool = True,
    dispatch_uid: Hashable | None = None,
    priority: int = 0,
) -> Callable[[Callable[ArgsT, ResultT]], Callable[ArgsT, ResultT]]: ...


@overload
def receiver(
    signal: Signal | Sequence[Signal],
    *,
    sender: Any = None,
    weak: bool = True,
    dispatch_uid: Hashable | None = None,
    priority: int = 0,
) -> Callable[[ReceiverT], ReceiverT]: ...


def receiver(
    signal: Signal | Sequence[Signal],
    *,
    sender: Any = None,
    weak: bool = True,
    dispatch_uid: Hashable | None = None,
    priority: int = 0,
) -> Callable[[ReceiverT], ReceiverT]:
    """Decorator: connect the function to one signal or each of a list of signals.

    The function is returned unchanged, and marked with what it connected to, so a
    plugin manager scanning a module knows which connections it owns::

        @receiver(order_paid, sender=Shop, dispatch_uid="mail-receipt")
        def mail_receipt(sender, order, amount, **kwargs): ...

    A method decorated in a class body is only marked, not connected: the plain
    function has no ``self`` to be called with.  Registering an instance of the class
    with a :class:`~tocsin.PluginManager` connects its bound methods.
    """
    if isinstance(signal, (str, bytes)):
        raise TypeError(
            f"@receiver takes a Signal or a list of Signals, not the string {signal!r}; "
            f"import the signal object itself."
        )
    signals = [signal] if isinstance(signal, Signal) else list(signal)
    for item in signals:
        if not isinstance(item, Signal):
            raise TypeError(
                f"@receiver takes a Signal or a list of Signals, not {type(item).__name__}."
            )

    def decorator(func: ReceiverT) -> ReceiverT:
        for item in signals:
            validate_receiver(func, item)
            validate_options(item, dispatch_uid, priority)
        marks = [ReceiverMark(item, sender, weak, dispatch_uid, priority) for item in signals]
        if not in_class_body(func):
            for mark in marks:
                mark.signal.connect(func, sender, weak, dispatch_uid, priority=priority)
        recording = declared_receivers.get()
        if recording is not None:
            recording.append((func, marks))
        try:
            existing = getattr(func, "__tocsin_receivers__", [])
            func.__tocsin_receivers__ = [*existing, *marks]  # type: ignore[attr-defined]
        except AttributeError:  # bound methods and some builtins take no attributes
            pass
        return func

    return decorator


def in_class_body(func: Callable[..., Any]) -> bool:
    """Whether *func* is being defined in a class body (its qualname says ``Class.name``)."""
    qualname = getattr(func, "__qualname__", "")
    owner = qualname.rpartition(".")[0] if isinstance(qualname, str) else ""
    return bool(owner) and not owner.endswith("<locals>")


class TypedSignal(Signal, Generic[P]):
    """A :class:`Signal` whose arguments are fixed by a prototype function.

    Create one with :meth:`Signal.typed`.  ``prototype`` is that function, kept for
    documentation; ``providing_args`` lists its keyword parameters.  The typed
    signatures below exist for type checkers only: at run time a typed signal *is* an
    ordinary signal, with the same send path.
    """

    prototype: Callable[P, object]

    if TYPE_CHECKING:
        # The same methods as Signal's, with the prototype's parameters in place of
        # ``sender, **named``; the implementations are Signal's own.

        def send(self, *args: P.args, **named: P.kwargs) -> Responses: ...

        def send_robust(self, *args: P.args, **named: P.kwargs) -> Responses: ...

        async def asend(self, *args: P.args, **named: P.kwargs) -> Responses: ...

        async def asend_robust(self, *args: P.args, **named: P.kwargs) -> Responses: ...

        def connect(  # type: ignore[override]
            self,
            receiver: Callable[P, ResultT],
            sender: Any = None,
            weak: bool = True,
            dispatch_uid: Hashable | None = None,
            *,
            priority: int = 0,
        ) -> Callable[P, ResultT]: ...


#: How many frames above a receiver are searched for the send method that called it.
_FRAME_SEARCH_DEPTH = 16


def sending_method(signal: Signal, frame: types.FrameType | None) -> str | None:
    """Which public method of *signal* (``"send"``, ``"send_robust"``, ``"asend"``,
    ``"asend_robust"``) called the receiver running in *frame*, or None if none did.

    For ``tocsin.testing.capture``.  Frames are told by their code objects, read off
    the methods themselves, so a renamed method cannot silently go unrecognised.  The C
    send has no frame: a receiver called straight from outside this module and
    ``tocsin._send`` was called by it.
    """
    if COMPILED and frame is not None and frame.f_globals.get("__name__") not in _SEND_MODULES:
        return "send"
    for _ in range(_FRAME_SEARCH_DEPTH):
        if frame is None:
            return None
        method = _SEND_CODES.get(frame.f_code)
        if method is not None and frame.f_locals.get("self") is signal:
            if method == "_send_slow":  # the slow path of send and send_robust alike
                return "send_robust" if frame.f_locals.get("robust") else "send"
            return method
        frame = frame.f_back
    return None


#: The modules whose frames stand between a send method and the receivers it calls.
_SEND_MODULES = frozenset({__name__, PureSendCore.__module__})
#: The code of each send method, and of the slow path that send and send_robust share.
_SEND_CODES: dict[types.CodeType, str] = {
    PureSendCore.send.__code__: "send",
    Signal.send_robust.__code__: "send_robust",
    Signal.asend.__code__: "asend",
    Signal.asend_robust.__code__: "asend_robust",
    Signal._send_slow.__code__: "_send_slow",
}
