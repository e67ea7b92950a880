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
import sys
import types
from contextlib import contextmanager

from tocsin._errors import AsyncReceiversInLoopError
from tocsin._prototype import read_prototype
from tocsin._refs import describe
from tocsin._registry import Registry, validate_fit, validate_options, validate_receiver
from tocsin._send import PureSendCore
from tocsin._switches import env_switch

# typing is not imported at run time: with what it imports, it would cost more than the
# rest of ``import tocsin`` together.  Type checkers read a constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import (
        Awaitable,
        Callable,
        Coroutine,
        Hashable,
        Iterable,
        Iterator,
        Sequence,
    )
    from typing import Any, Generic, NamedTuple, TypeVar, final, overload

    # Type checkers see the pure class, which declares what the C one implements.
    from typing_extensions import ParamSpec

    from tocsin._refs import Holder
    from tocsin._registry import Plan, Snapshot
    from tocsin._send import PureSendCore as SendCore
    from tocsin._send import Responses

    P = ParamSpec("P", default=...)
    ReceiverT = TypeVar("ReceiverT", bound=Callable[..., Any])
    ResultT = TypeVar("ResultT")
    ArgsT = ParamSpec("ArgsT")
else:
    from tocsin._refs import NamedTuple, final
    from tocsin._send import SendCore

    class Generic:
        """What ``typing.Generic`` does at run time for :class:`TypedSignal`, without
        importing typing: ``Generic[P]`` as a base class, and ``TypedSignal[...]``, which
        gives a :class:`types.GenericAlias` (as ``list[int]`` does)."""

        __slots__ = ()

        def __class_getitem__(cls, parameters: object) -> types.GenericAlias:
            return types.GenericAlias(cls, parameters)

    P = "P"  # a typed signal's parameters, for type checkers only

__all__ = [
    "ReceiverMark",
    "Signal",
    "TypedSignal",
    "declared_receivers",
    "in_class_body",
    "receiver",
    "sending_method",
]

#: What a strict signal's send reads instead of its connection table: never empty, not
#: a dict, so the C send and the pure one both go to the slow path, which checks.
_ALWAYS_ASK: Any = frozenset({"strict"})


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


class ReceiverList(list["Callable[..., Any]"]):
    """What :attr:`Signal.receivers` returns: the live receivers, and the connections
    they came from, so that assigning the list back (unchanged) restores exactly those."""

    __slots__ = ("_read", "_snapshot")

    def __init__(self, receivers: list[Callable[..., Any]], snapshot: Snapshot) -> None:
        super().__init__(receivers)
        self._read = tuple(receivers)
        self._snapshot = snapshot

    @property
    def snapshot(self) -> Snapshot | None:
        """The connections behind the receivers, or None once the list was changed."""
        unchanged = len(self) == len(self._read) and all(
            a is b for a, b in zip(self, self._read, strict=True)
        )
        return self._snapshot if unchanged else None


@final
class SenderReceiversCache:
    """Django's ``signal.sender_receivers_cache``, over tocsin's per-sender caches."""

    __slots__ = ("_registry",)

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def clear(self) -> None:
        """Drop every cached entry; each sender's next send rebuilds its own."""
        self._registry.invalidate_all()

    def get(self, sender: Any, default: Any = None) -> Any:
        """The cached receivers for *sender* (a tuple), or *default* if none is cached."""
        plan = self._registry.plans.get(Registry.sender_key(sender))
        if plan is None:
            return default
        return tuple(r for h in plan.sync + plan.asynchronous if (r := h()) is not None)

    def __len__(self) -> int:
        return len(self._registry.plans)

    def __bool__(self) -> bool:
        return bool(self._registry.plans)


class Signal(SendCore):
    """A named event that receivers connect to and senders send.

    ``providing_args`` documents the arguments senders pass (Django's original form;
    shown by the CLI): a receiver that requires an argument the signal never sends is
    refused when it connects.  With ``strict`` (default: the ``TOCSIN_DEBUG``
    environment switch), a send that passes an argument ``providing_args`` does not
    name is refused too; strict signals always take the slow path, so the checks cost
    nothing to the others.  ``use_caching`` is accepted for
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
        *,
        strict: bool | None = None,
    ) -> None:
        if isinstance(providing_args, bool):  # Signal(True): Django's positional use_caching
            providing_args, use_caching = None, providing_args
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
        self.registry = Registry(self, frozenset(args) if providing_args is not None else None)
        # The two tables the send reads, shared with the registry (which never
        # replaces them, only changes them in place).
        self._connections = self.registry.connections
        self._send_cache = self.registry.send_cache
        if strict is None:
            strict = providing_args is not None and env_switch("TOCSIN_DEBUG")
        elif strict and providing_args is None:
            raise TypeError(
                f"Signal {name or '(unnamed)'!r}: strict=True checks sends against "
                f"providing_args; give the signal its providing_args."
            )
        if strict:
            # Every send of a strict signal goes the Python way, where its arguments
            # are checked: the send never sees an empty table or a cached tuple.
            self._connections = _ALWAYS_ASK
            self.registry.uncached += 1

    @property
    def strict(self) -> bool:
        """Whether sends are checked against ``providing_args`` (see the class)."""
        return self._connections is _ALWAYS_ASK

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

        Returns True if a connection was removed, False if there was none (a
        ``dispatch_uid`` never connected included, as in Django).

        .. versionchanged:: 0.1 an unknown ``dispatch_uid`` returns False, as in
           Django, instead of raising :class:`UnknownDispatchUidError`.
        """
        if fn is not None:
            receiver = _pick_receiver(receiver, fn, self, "disconnect")
        elif receiver is None and not dispatch_uid:
            raise TypeError(
                f"{self!r}.disconnect() needs the receiver to disconnect, or the "
                f"dispatch_uid it was connected with."
            )
        return self.registry.disconnect(receiver, sender, dispatch_uid)

    def has_listeners(self, sender: Any = None) -> bool:
        """Whether a send from *sender* would reach at least one live receiver."""
        return self.registry.has_listeners(sender)

    # -- what Django code reaches for ---------------------------------------------------
    # Django's own tests, and code written against django.dispatch, use these parts of
    # Django's Signal beyond its methods (issue 12); tocsin's registry answers them.

    @property
    def receivers(self) -> list[Callable[..., Any]]:
        """The live receivers, in the order they were connected (a new list).

        Assigning it back later puts back exactly those connections (with their
        senders, dispatch_uids and priorities), and assigning ``[]`` disconnects every
        receiver: the two ways Django's tests save and restore a signal.
        """
        snapshot = self.registry.snapshot()
        return ReceiverList(self.registry.receivers(), snapshot)

    @receivers.setter
    def receivers(self, value: Sequence[Any]) -> None:
        if isinstance(value, ReceiverList) and value.snapshot is not None:
            self.registry.restore(value.snapshot)
        elif len(value) == 0:
            self.registry.clear()
        else:
            raise TypeError(
                f"{self!r}.receivers can be assigned [] (to disconnect every receiver) or "
                f"a list read from some signal's .receivers (to put those connections "
                f"back); use connect() to add receivers."
            )

    @property
    def lock(self) -> threading.Lock:
        """The lock that guards the connections (Django's ``signal.lock``)."""
        return self.registry.lock

    def _clear_dead_receivers(self) -> None:
        """Forget connections whose receiver or sender was collected.  Call it with
        :attr:`lock` held, as Django's code does; connect, disconnect and the first send
        from a sender do it anyway."""
        self.registry.purge_dead_locked()

    @property
    def sender_receivers_cache(self) -> SenderReceiversCache:
        """The per-sender receiver cache, as Django exposes it: ``clear()`` empties it
        (the next send from each sender rebuilds its entry), ``get(sender)`` reads it."""
        return SenderReceiversCache(self.registry)

    # -- watching activity --------------------------------------------------------------

    def is_active(self) -> bool:
        """Whether any receiver is connected, for any sender.

        A receiver collected since the last connect or disconnect may still count.
        Cheaper than :meth:`has_listeners`, and meant for bridges that forward another
        library's signal only while someone here listens.
        """
        return bool(self.registry.connections)

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

    # The slow path calls its receivers in a loop of its own, as the sends in
    # tocsin._send do, rather than through a helper: Django's dispatcher has exactly
    # one frame (send or send_robust) between the caller and a receiver, and receivers
    # count on it (Django's own setting_changed receiver warns with a fixed stacklevel;
    # issue 12).

    def _send_slow(self, sender: Any, named: dict[str, Any], *, robust: bool) -> Responses:
        """The slow-path hook of the C send (see :class:`tocsin._send.PureSendCore`):
        a send whose sender has no entry in the send cache."""
        holders, waiting = self._receivers_for(sender, named, robust)
        responses: Responses = []
        for holder in holders:
            receiver = holder()
            if receiver is not None:
                if robust:
                    try:
                        response = receiver(signal=self, sender=sender, **named)
                    except Exception as error:
                        _log_failure(receiver, error)
                        response = error
                else:
                    response = receiver(signal=self, sender=sender, **named)
                responses.append((receiver, response))
        if waiting:
            results = _run_to_completion(self._gather(waiting, sender, named, robust))
            responses += zip(waiting, results, strict=True)
        return responses

    def _receivers_for(
        self, sender: Any, named: dict[str, Any], robust: bool
    ) -> tuple[tuple[Holder, ...], list[Callable[..., Any]]]:
        """The synchronous receivers' holders for a send from *sender*, and the live
        async receivers, which the send runs to completion after them.

        Raises :class:`AsyncReceiversInLoopError`, before any receiver runs, when there
        are async receivers and this thread runs an event loop; and for a strict
        signal, ``TypeError`` for an argument it does not declare.
        """
        if self._connections is _ALWAYS_ASK:
            self._check_arguments(named, "send_robust" if robust else "send")
            if not self.registry.connections:
                return (), []
        if self.registry.muted:
            return (), []
        plan = self.registry.plan_for(sender)
        # The cached plan may predate the collection of its last async receiver: only
        # live ones count.  The error holds no receiver (its traceback keeps this frame).
        if any(h() is not None for h in plan.asynchronous) and _loop_running():
            raise AsyncReceiversInLoopError(self._in_loop_message(plan, robust))
        waiting = [r for h in plan.asynchronous if (r := h()) is not None]
        return plan.sync, waiting

    def _check_arguments(self, named: dict[str, Any], method: str) -> None:
        undeclared = sorted(set(named) - set(self.providing_args))
        if undeclared:
            provides = ", ".join(self.providing_args)
            raise TypeError(
                f"{self!r}.{method}() got {', '.join(map(repr, undeclared))}, which the "
                f"signal does not declare (its providing_args: {provides}). Fix the name, "
                f"or add it to providing_args."
            )

    def _in_loop_message(self, plan: Plan, robust: bool) -> str:
        names = ", ".join(describe(r) for h in plan.asynchronous if (r := h()) is not None)
        method = "asend_robust" if robust else "asend"
        return (
            f"{self!r} has async receivers ({names}), which "
            f"send{'_robust' if robust else ''}() cannot run inside a running event "
            f"loop. Use 'await signal.{method}(sender, ...)' instead. No receiver was "
            f"called."
        )

    def _run_async(
        self,
        receivers: list[Callable[..., Any]],
        sender: Any,
        named: dict[str, Any],
        robust: bool = False,
    ) -> Responses:
        results = _run_to_completion(self._gather(receivers, sender, named, robust))
        return list(zip(receivers, results, strict=True))

    def _log_robust_failure(self, receiver: Callable[..., Any], error: Exception) -> None:
        _log_failure(receiver, error)

    def _call_sync(
        self,
        receivers: list[Callable[..., Any]],
        sender: Any,
        named: dict[str, Any],
        robust: bool,
        handling: BaseException | None,
    ) -> Responses:
        """Call synchronous receivers in order (asend's work, off the event loop).

        *handling* is the exception the sender was handling, if any: it is being
        handled here too, so receivers that read ``sys.exc_info()`` (Django's test
        client's ``got_request_exception`` receiver does) see it in this thread as
        they would in the sender's.
        """
        if handling is not None:
            traceback = handling.__traceback__
            try:
                raise handling
            except BaseException:
                handling.__traceback__ = traceback  # as it was: re-raising added a frame
                return self._call_sync(receivers, sender, named, robust, None)
        responses: Responses = []
        for receiver in receivers:
            if robust:
                try:
                    response = receiver(signal=self, sender=sender, **named)
                except Exception as error:
                    _log_failure(receiver, error)
                    response = error
            else:
                response = receiver(signal=self, sender=sender, **named)
            responses.append((receiver, response))
        return responses

    async def _gather(
        self, receivers: list[Callable[..., Any]], sender: Any, named: dict[str, Any], robust: bool
    ) -> list[Any]:
        """Run async receivers concurrently; their responses in dispatch order.

        Only the responses: the caller pairs them with the receivers, since asyncio
        keeps a task's result for a while after it is done, and a result must not keep
        a weakly connected receiver alive.
        """
        import asyncio

        if robust:
            return await asyncio.gather(
                *(self._guarded(receiver, sender, named) for receiver in receivers)
            )
        return await asyncio.gather(
            *(receiver(signal=self, sender=sender, **named) for receiver in receivers)
        )

    async def _guarded(
        self, receiver: Callable[..., Awaitable[Any]], sender: Any, named: dict[str, Any]
    ) -> Any:
        try:
            return await receiver(signal=self, sender=sender, **named)
        except Exception as error:
            _log_failure(receiver, error)
            return error

    async def asend(self, sender: Any, **named: Any) -> Responses:
        """Call every receiver for *sender* from inside an event loop.

        As in Django, the synchronous receivers run in order, in one hop off the event
        loop's thread (``asgiref.sync.sync_to_async``, thread-sensitive, when asgiref is
        installed; the loop's default executor otherwise), while the async receivers run
        concurrently.  Responses: the synchronous ones, then the async ones.  A
        receiver's exception propagates.
        """
        return await self._asend(sender, named, robust=False)

    async def asend_robust(self, sender: Any, **named: Any) -> Responses:
        """Like :meth:`asend`, but an ``Exception`` from a receiver becomes its response."""
        return await self._asend(sender, named, robust=True)

    async def _asend(self, sender: Any, named: dict[str, Any], robust: bool) -> Responses:
        if self._connections is _ALWAYS_ASK:
            self._check_arguments(named, "asend_robust" if robust else "asend")
        if not self.registry.connections or self.registry.muted:
            return []
        plan = self.registry.plan_for(sender)
        calling = [r for h in plan.sync if (r := h()) is not None]
        waiting = [r for h in plan.asynchronous if (r := h()) is not None]
        handling = sys.exc_info()[1]
        if not waiting:
            if not calling:
                return []
            return await _off_the_loop(self._call_sync, calling, sender, named, robust, handling)
        import asyncio

        if not calling:
            results = await self._gather(waiting, sender, named, robust)
            return list(zip(waiting, results, strict=True))
        sync_responses, results = await asyncio.gather(
            _off_the_loop(self._call_sync, calling, sender, named, robust, handling),
            self._gather(waiting, sender, named, robust),
        )
        return [*sync_responses, *zip(waiting, results, strict=True)]

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


def _loop_running() -> bool:
    import asyncio  # imported on first use: it is most of what importing tocsin costs

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_to_completion(coroutine: Coroutine[Any, Any, list[Any]]) -> list[Any]:
    """Run *coroutine* from synchronous code, as Django's send does: through
    ``asgiref.sync.async_to_sync`` when asgiref is installed (so thread-sensitive code
    the receivers call runs in this thread), else in a fresh event loop."""
    try:
        from asgiref.sync import async_to_sync
    except ImportError:
        import asyncio

        return asyncio.run(coroutine)

    async def run() -> list[Any]:
        return await coroutine

    return async_to_sync(run)()


async def _off_the_loop(call: Callable[..., Responses], *args: Any) -> Responses:
    """Await ``call(*args)`` run off the event loop's thread, as Django's asend does."""
    try:
        from asgiref.sync import sync_to_async
    except ImportError:
        import asyncio
        import functools

        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(context.run, call, *args))
    return await sync_to_async(call, thread_sensitive=True)(*args)


def _log_failure(receiver: Callable[..., Any], error: Exception) -> None:
    # One message for send_robust and asend_robust alike, as the contract (and Django,
    # whose asend_robust logs the same text) has it: log filters match on it.  logging
    # is imported when first needed: it is slow to import.
    import logging

    logging.getLogger("tocsin.dispatch").error(
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


if TYPE_CHECKING:  # typing.overload, at run time, would need typing

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


def receiver(signal: Any, **options: Any) -> Callable[[ReceiverT], ReceiverT]:
    """Decorator: connect the function to one signal or each of a list of signals.

    The function is returned unchanged, and marked with what it connected to, so a
    plugin manager scanning a module knows which connections it owns::

        @receiver(order_paid, sender=Shop, dispatch_uid="mail-receipt")
        def mail_receipt(sender, order, amount, **kwargs): ...

    As Django's decorator does, it takes a list or tuple of signals, or anything else
    with a ``connect`` method, and passes ``connect`` exactly the options it was given
    (so a ``Signal`` subclass with Django's ``connect`` signature, such as Django's
    ``ModelSignal``, works; ``priority`` is passed only when given).

    A method decorated in a class body is only marked, not connected to a tocsin
    signal: the plain function has no ``self`` to be called with.  Registering an
    instance of the class with a :class:`~tocsin.PluginManager` connects its bound
    methods.

    .. versionchanged:: 0.1 accepts any object with ``connect``, as Django's does.
    """
    if isinstance(signal, (str, bytes)):
        raise TypeError(
            f"@receiver takes a Signal or a list of Signals, not the string {signal!r}; "
            f"import the signal object itself."
        )
    signals = list(signal) if isinstance(signal, (list, tuple)) else [signal]
    for item in signals:
        if not callable(getattr(item, "connect", None)):
            hint = (
                " Write @receiver(some_signal) above the function, not @receiver alone."
                if callable(item) and not isinstance(item, type)
                else ""
            )
            raise TypeError(
                f"@receiver takes a Signal or a list or tuple of Signals (anything with a "
                f"connect() method), not {type(item).__name__}.{hint}"
            )
    own = [item for item in signals if isinstance(item, Signal)]
    unknown = sorted(set(options) - _RECEIVER_OPTIONS)
    # Options only a subclass's connect() understands (Django's ModelSignal takes
    # apps=) are passed on to it; tocsin's own connect() would reject them late.
    plain = [item for item in own if type(item).connect is Signal.connect]
    if unknown and plain:
        raise TypeError(
            f"@receiver got unexpected option(s) {', '.join(unknown)} for {plain[0]!r}; "
            f"it takes sender, weak, dispatch_uid and priority."
        )
    sender = options.get("sender")
    weak = options.get("weak", True)
    dispatch_uid = options.get("dispatch_uid")
    priority = options.get("priority", 0)

    def decorator(func: ReceiverT) -> ReceiverT:
        skip_own = in_class_body(func)  # a method: connected once bound (see above)
        for item in own:
            validate_receiver(func, item)
            validate_options(item, dispatch_uid, priority)
            if item.registry.provides is not None:
                validate_fit(func, item, item.registry.provides, unbound_method=skip_own)
        marks = [ReceiverMark(item, sender, weak, dispatch_uid, priority) for item in own]
        for item in signals:
            if not (skip_own and isinstance(item, Signal)):
                item.connect(func, **options)
        recording = declared_receivers.get()
        if recording is not None and marks:
            recording.append((func, marks))
        if marks:
            try:
                existing = getattr(func, "__tocsin_receivers__", [])
                func.__tocsin_receivers__ = [*existing, *marks]  # type: ignore[attr-defined]
            except AttributeError:  # bound methods and some builtins take no attributes
                pass
        return func

    return decorator


#: The options tocsin's own ``connect`` takes, as ``@receiver`` passes them on.
_RECEIVER_OPTIONS = frozenset({"sender", "weak", "dispatch_uid", "priority"})


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

    For ``tocsin.testing.capture``, which makes sends take the Python path while it
    records (the C send has no frame).  Frames are told by their code objects, read off
    the methods themselves, so a renamed method cannot silently go unrecognised.
    """
    for _ in range(_FRAME_SEARCH_DEPTH):
        if frame is None:
            return None
        method = _SEND_CODES.get(frame.f_code)
        if method is not None and frame.f_locals.get("self") is signal:
            robust = bool(frame.f_locals.get("robust"))
            if method == "_send_slow":  # the slow path of send and send_robust alike
                return "send_robust" if robust else "send"
            if method == "_call_sync":  # asend's synchronous receivers, off the loop
                return "asend_robust" if robust else "asend"
            return method
        frame = frame.f_back
    return None


#: The code of each send method, and of the slow path that send and send_robust share.
_SEND_CODES: dict[types.CodeType, str] = {
    PureSendCore.send.__code__: "send",
    PureSendCore.send_robust.__code__: "send_robust",
    Signal.asend.__code__: "asend",
    Signal.asend_robust.__code__: "asend_robust",
    Signal._send_slow.__code__: "_send_slow",
    Signal._call_sync.__code__: "_call_sync",
}
