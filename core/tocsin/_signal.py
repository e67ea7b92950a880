"""Signal and receiver: Django's dispatch semantics, sync and async, without Django.

A :class:`Signal` keeps its connections in plain dicts guarded by one lock, and answers
sends from a per-sender cache of immutable tuples that connect and disconnect
invalidate.  Everything a send needs to know (weak or strong, async or not, order) is
decided when a receiver connects, so sending is a dict lookup and a loop.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

from tocsin._errors import AsyncReceiversInLoopError, UnknownDispatchUidError
from tocsin._send import COMPILED, Responses

if TYPE_CHECKING:
    from tocsin._send import PureSendCore as SendCore
else:
    from tocsin._send import SendCore
from tocsin._refs import (
    ANY_SENDER,
    CO_COROUTINE,
    CO_VARKEYWORDS,
    IMMORTAL_SENDERS,
    Holder,
    ReceiverRef,
    ReceiverWeakBuiltinMethod,
    ReceiverWeakMethod,
    SenderRef,
    accepts_kwargs,
    describe,
    is_async_callable,
    is_builtin_method,
    receiver_identity,
    sender_key,
    strong_holder,
)

if TYPE_CHECKING:
    from typing import ParamSpec

    from tocsin._typed import TypedSignal

    ArgsT = ParamSpec("ArgsT")

__all__ = ["ReceiverMark", "Signal", "receiver"]

logger = logging.getLogger("tocsin.dispatch")

ReceiverT = TypeVar("ReceiverT", bound=Callable[..., Any])
ResultT = TypeVar("ResultT")

#: How many senders without receivers of their own get a cache entry.  They all share
#: the any-sender receivers, so past this many (say, a fresh object as sender on every
#: send) they are answered from the slow path instead of growing the cache forever.
CACHE_LIMIT = 4096


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


class _Connection:
    """One receiver connected to one signal for one sender (or for any)."""

    __slots__ = (
        "dispatch_uid",
        "fast_holder",
        "holder",
        "is_async",
        "lookup_key",
        "order",
        "priority",
        "sender_holder",
        "sender_key",
        "strong",
    )

    # Made only by Signal._connect, field by field (see there).
    lookup_key: Hashable
    sender_key: Hashable
    holder: Holder  # ref(): the receiver, or None once collected
    # What send tuples hold: for a weakly held function under the pure-Python send,
    # the plain (callback-less, shared) weakref.ref, which it calls a little faster.
    fast_holder: Holder
    strong: Callable[..., Any] | None  # keeps a weak=False receiver alive
    sender_holder: Callable[[], Any] | None  # identity senders only: the sender or None
    priority: int
    order: int
    is_async: bool
    dispatch_uid: Hashable | None

    def alive(self) -> bool:
        if self.holder() is None:
            return False
        return self.sender_holder is None or self.sender_holder() is not None

    def serves(self, sender: Any) -> bool:
        """Whether this connection's sender is *sender* itself (not an id look-alike)."""
        return self.sender_holder is None or self.sender_holder() is sender


_new_connection = object.__new__

#: A sender's connections: most senders have a single receiver, and a dict for each of
#: them would be the largest object a connection costs, so a lone connection is kept
#: as it is, and a dict (lookup key -> connection) holds two or more.
_Bucket = _Connection | dict[Hashable, _Connection]


def _bucket_connections(bucket: _Bucket | None) -> list[_Connection]:
    """A snapshot of the connections in *bucket* (none for None)."""
    if bucket is None:
        return []
    if type(bucket) is dict:
        return list(bucket.values())
    assert type(bucket) is _Connection
    return [bucket]


class _Plan(NamedTuple):
    """The receivers of one sender, in dispatch order, as a send needs them."""

    holders: tuple[Holder, ...]
    is_async: tuple[bool, ...]
    any_async: bool


_EMPTY_PLAN = _Plan((), (), False)


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
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_activity_watchers",
        "_by_sender",
        "_dead_receivers",
        "_dead_senders",
        "_emptied",
        "_known_uids",
        "_lock",
        "_muted",
        "_on_receiver_death",
        "_on_sender_death",
        "_order",
        "_plans",
        "_watchers",
        "name",
        "providing_args",
        "use_caching",
    )

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
        self._lock = threading.Lock()
        self._order = itertools.count()
        # lookup key -> connection, and sender key -> that sender's connections (see
        # _Bucket: the connection itself while it is the only one).
        self._connections: dict[Hashable, _Connection] = {}
        self._by_sender: dict[Hashable, _Bucket] = {}
        self._known_uids: set[Hashable] = set()
        # Caches, rebuilt lazily by the slow path.  _plans maps a sender key (by value
        # for str and int, by id otherwise) to that sender's receivers.  _send_cache is
        # the hot path's: it maps id(sender) to receiver holders, only for senders whose
        # receivers are all synchronous and whose id() cannot be handed to another
        # object while the entry exists (immortal, or watched by _watchers, which drop
        # the entry the moment the sender is collected).
        self._send_cache = {}
        self._plans: dict[Hashable, _Plan] = {}
        self._watchers: dict[int, SenderRef] = {}
        # Filled by weak-reference callbacks (which may run in any thread, at any time,
        # even while this signal's lock is held); emptied under the lock.
        self._dead_receivers: list[Hashable] = []
        self._dead_senders: list[Hashable] = []
        self._muted = 0
        self._activity_watchers: list[Callable[[Signal], object]] = []
        self._emptied = False  # set under the lock, cleared by _notify_activity
        # Bound once: every weakly held receiver and sender gets one of these callbacks.
        self._on_receiver_death = self._receiver_died
        self._on_sender_death = self._sender_died

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
        from tocsin._typed import from_prototype

        return from_prototype(prototype)

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
        self._connect(receiver, sender, weak, dispatch_uid, priority)
        return receiver

    def _connect(
        self,
        receiver: Callable[..., Any],
        sender: Any,
        weak: bool,
        dispatch_uid: Hashable | None,
        priority: int,
    ) -> _Connection | None:
        """Connect, returning the new connection, or None when one already existed."""
        if dispatch_uid is not None or type(priority) is not int:
            _validate_options(self, dispatch_uid, priority)
        # Plain functions, by far the usual receiver, are answered from their code
        # flags; connecting tens of thousands of them must stay cheap.
        if type(receiver) is types.FunctionType:
            flags = receiver.__code__.co_flags
            if not flags & CO_VARKEYWORDS:
                _validate_receiver(receiver, self)  # raises the ValueError
            is_async = bool(flags & CO_COROUTINE) or (
                bool(receiver.__dict__) and is_async_callable(receiver)
            )
            identity: Hashable = id(receiver)
        else:
            _validate_receiver(receiver, self)
            is_async = is_async_callable(receiver)
            identity = receiver_identity(receiver)
        if dispatch_uid is not None:
            identity = ("uid", dispatch_uid)
        # sender_key() spelled out (and by-value senders need no holder): per connect.
        sender_holder = None
        if sender is None:
            skey: Hashable = ANY_SENDER
        elif type(sender) is str:
            skey = sender
        elif type(sender) is int:
            skey = (int, sender)
        else:
            skey = id(sender)
            sender_holder = self._hold_sender(sender, skey)
        lookup_key = (identity, skey)
        holder: Holder
        fast_holder: Holder
        if weak and type(receiver) is types.FunctionType:
            ref = holder = ReceiverRef(receiver, self._on_receiver_death)
            ref.lookup_key = lookup_key
            # The C send reads a ReceiverRef as fast as a plain reference; the pure one
            # calls a plain reference a little faster, worth one more (shared) object.
            strong, fast_holder = None, ref if COMPILED else weakref.ref(receiver)
        else:
            holder, strong = self._hold_receiver(receiver, weak, lookup_key)
            fast_holder = holder
        self._lock.acquire()  # not `with`: see disconnect()
        try:
            was_active = bool(self._connections)
            if self._dead_receivers or self._dead_senders:
                self._purge_dead()
            existing = self._connections.get(lookup_key)
            if existing is not None:
                if existing.alive():
                    return None
                self._remove(existing)
            # Field by field: calling the class would cost as much again as the stores.
            connection = _new_connection(_Connection)
            connection.lookup_key = lookup_key
            connection.sender_key = skey
            connection.holder = holder
            connection.fast_holder = fast_holder
            connection.strong = strong
            connection.sender_holder = sender_holder
            connection.priority = priority
            connection.order = next(self._order)
            connection.is_async = is_async
            connection.dispatch_uid = dispatch_uid
            self._connections[lookup_key] = connection
            # _file(connection), inline but for a second connection joining a first.
            bucket = self._by_sender.get(skey)
            if bucket is None:
                self._by_sender[skey] = connection
            elif type(bucket) is dict:
                bucket[lookup_key] = connection
            else:
                self._file(connection)
            if dispatch_uid is not None:
                self._known_uids.add(dispatch_uid)
            # _invalidate(skey), inline: a call is a good part of a connect's cost.
            if skey is ANY_SENDER:
                if self._send_cache:
                    self._send_cache = {}
                if self._plans:
                    self._plans = {}
            else:
                self._send_cache.pop(skey, None)
                self._plans.pop(skey, None)
        finally:
            self._lock.release()
        if (not was_active or self._emptied) and self._activity_watchers:
            self._notify_activity()
        return connection

    def _hold_receiver(
        self, receiver: Callable[..., Any], weak: bool, lookup_key: Hashable
    ) -> tuple[Holder, Callable[..., Any] | None]:
        if not weak:
            try:
                return weakref.ref(receiver), receiver
            except TypeError:
                return strong_holder(receiver), receiver
        ref: ReceiverRef | ReceiverWeakMethod | ReceiverWeakBuiltinMethod
        try:
            if isinstance(receiver, types.MethodType):
                ref = ReceiverWeakMethod(receiver, self._on_receiver_death)
            elif is_builtin_method(receiver):
                ref = ReceiverWeakBuiltinMethod(receiver, self._on_receiver_death)
            else:
                ref = ReceiverRef(receiver, self._on_receiver_death)
        except TypeError:
            raise TypeError(
                f"Cannot connect {describe(receiver)} to {self!r} weakly: "
                f"{type(receiver).__name__} objects do not support weak references. "
                f"Pass weak=False to keep a strong reference."
            ) from None
        ref.lookup_key = lookup_key
        return ref, None

    def _hold_sender(self, sender: Any, skey: Hashable) -> Callable[[], Any]:
        # A sender matched by identity must not be mistaken for a later object that
        # reuses its id(): watch it weakly, or keep it alive when it cannot be watched.
        try:
            ref = SenderRef(sender, self._on_sender_death)
        except TypeError:
            return strong_holder(sender)
        ref.key = skey
        return ref

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
        if receiver is None and fn is not None:
            receiver = fn
        elif fn is not None and fn is not receiver:
            raise TypeError(f"{self!r}.disconnect() got both receiver and fn; pass one of them.")
        if receiver is None and dispatch_uid is None:
            raise TypeError(
                f"{self!r}.disconnect() needs the receiver to disconnect, or the "
                f"dispatch_uid it was connected with."
            )
        skey = ANY_SENDER if sender is None else sender_key(sender)
        if dispatch_uid is not None:
            identity: Hashable = ("uid", dispatch_uid)
        else:
            assert receiver is not None
            if type(receiver) is types.FunctionType:
                identity = id(receiver)
            else:
                identity = receiver_identity(receiver)
        # acquire/release rather than `with`: half the cost, on a path that must stay
        # cheap with tens of thousands of receivers.
        self._lock.acquire()
        try:
            if self._dead_receivers or self._dead_senders:
                self._purge_dead()
            if dispatch_uid is not None and dispatch_uid not in self._known_uids:
                known = sorted(map(repr, self._known_uids))
                raise UnknownDispatchUidError(
                    f"No receiver was ever connected to {self!r} with dispatch_uid "
                    f"{dispatch_uid!r}. Known dispatch_uids: {', '.join(known) or 'none'}."
                )
            connection = self._connections.get((identity, skey))
            if connection is None:
                return False
            holder = connection.sender_holder  # connection.serves(sender), inline
            if holder is not None and holder() is not sender:
                return False
            self._remove(connection)
            return True
        finally:
            self._lock.release()
            if self._emptied:
                self._notify_activity()

    def _claim(
        self, receiver: Callable[..., Any], sender: Any, dispatch_uid: Hashable | None
    ) -> _Connection | None:
        """The live connection for (receiver or dispatch_uid, sender), if *receiver* holds it.

        Used by the plugin manager to learn which connections a plugin's import made:
        with a dispatch_uid another receiver may hold, and then it is not the plugin's.
        """
        skey = ANY_SENDER if sender is None else sender_key(sender)
        identity = (
            ("uid", dispatch_uid) if dispatch_uid is not None else receiver_identity(receiver)
        )
        with self._lock:
            connection = self._connections.get((identity, skey))
        if connection is None or not connection.alive() or not connection.serves(sender):
            return None
        held = connection.holder()
        # A bound method is made anew on each access: compare what it is bound to.  Both
        # are alive here, so their ids cannot be another object's.
        if held is not None and (
            held is receiver or receiver_identity(held) == receiver_identity(receiver)
        ):
            return connection
        return None

    def _drop(self, connection: _Connection) -> bool:
        """Remove exactly *connection*, if it is still connected."""
        try:
            with self._lock:
                if self._connections.get(connection.lookup_key) is not connection:
                    return False
                self._remove(connection)
                return True
        finally:
            if self._emptied:
                self._notify_activity()

    def _file(self, connection: _Connection) -> None:
        """Add *connection* to its sender's bucket (lock held)."""
        skey = connection.sender_key
        bucket = self._by_sender.get(skey)
        if bucket is None:
            self._by_sender[skey] = connection
        elif type(bucket) is dict:
            bucket[connection.lookup_key] = connection
        else:
            assert type(bucket) is _Connection
            self._by_sender[skey] = {bucket.lookup_key: bucket, connection.lookup_key: connection}

    def _remove(self, connection: _Connection) -> None:
        """Forget a connection (lock held)."""
        del self._connections[connection.lookup_key]
        if not self._connections and self._activity_watchers:
            self._emptied = True  # told to the watchers once the lock is released
        skey = connection.sender_key
        bucket = self._by_sender[skey]
        if bucket is connection:
            del self._by_sender[skey]
        else:
            assert type(bucket) is dict
            del bucket[connection.lookup_key]
            if not bucket:
                del self._by_sender[skey]
        self._invalidate(skey)

    def _invalidate(self, skey: Hashable) -> None:
        """Drop cached receivers that a change for *skey* affects (lock held).

        Any-sender receivers are part of every sender's tuple, so a change to them
        starts the caches afresh: O(1), and the next send per sender rebuilds once.
        """
        if skey is ANY_SENDER:
            if self._send_cache:
                self._send_cache = {}
            if self._plans:
                self._plans = {}
        else:
            self._send_cache.pop(skey, None)
            self._plans.pop(skey, None)

    def _receiver_died(
        self, ref: ReceiverRef | ReceiverWeakMethod | ReceiverWeakBuiltinMethod
    ) -> None:
        # Runs inside garbage collection: no lock, only an atomic append.
        self._dead_receivers.append(ref.lookup_key)

    def _sender_died(self, ref: SenderRef) -> None:
        # The id() is free for reuse from now on: drop its cache entries at once (dict
        # operations are atomic), and let the next locked operation forget the rest.
        self._send_cache.pop(ref.key, None)
        self._plans.pop(ref.key, None)
        self._dead_senders.append(ref.key)

    def _unwatched(self, ref: SenderRef) -> None:
        # A sender with a hot-path entry was collected: atomic dict operations only.
        self._send_cache.pop(ref.key, None)
        if self._watchers.get(ref.key) is ref:
            self._watchers.pop(ref.key, None)

    def _purge_dead(self) -> None:
        """Forget connections whose receiver or sender was collected (lock held)."""
        while self._dead_receivers:
            connection = self._connections.get(self._dead_receivers.pop())
            if connection is not None and not connection.alive():
                self._remove(connection)
        while self._dead_senders:
            bucket = self._by_sender.get(self._dead_senders.pop())
            for connection in _bucket_connections(bucket):
                if not connection.alive():
                    self._remove(connection)

    # -- looking up -------------------------------------------------------------------

    def _plan_for(self, sender: Any) -> _Plan:
        """Return the receivers for *sender*, from the cache or freshly built."""
        key = sender_key(sender)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        with self._lock:
            self._purge_dead()
            plan = self._build_plan(sender, key)
            if self._muted or (key not in self._by_sender and len(self._plans) >= CACHE_LIMIT):
                return plan
            self._plans[key] = plan
            if not plan.any_async and self._watch(sender):
                self._send_cache[id(sender)] = plan.holders
        return plan

    def _watch(self, sender: Any) -> bool:
        """Make sure *sender*'s id() is not reused while it has a hot-path entry (lock held).

        Senders matched by value (str, int) and those that cannot be weakly referenced
        get no hot-path entry; they are served from ``_plans``, one step slower.
        """
        if any(sender is immortal for immortal in IMMORTAL_SENDERS):
            return True
        if type(sender) is str or type(sender) is int:
            return False
        key = id(sender)
        watcher = self._watchers.get(key)
        if watcher is not None and watcher() is sender:
            return True
        if len(self._watchers) >= CACHE_LIMIT:
            return False
        try:
            watcher = SenderRef(sender, self._unwatched)
        except TypeError:
            return False
        watcher.key = key
        self._watchers[key] = watcher
        return True

    def _build_plan(self, sender: Any, key: Hashable) -> _Plan:
        connections = [c for c in _bucket_connections(self._by_sender.get(ANY_SENDER)) if c.alive()]
        own = self._by_sender.get(key)
        if own is not None:
            connections += [c for c in _bucket_connections(own) if c.alive() and c.serves(sender)]
        if not connections:
            return _EMPTY_PLAN
        connections.sort(key=lambda c: (-c.priority, c.order))
        flags = tuple(c.is_async for c in connections)
        return _Plan(tuple(c.fast_holder for c in connections), flags, any(flags))

    def has_listeners(self, sender: Any = None) -> bool:
        """Whether a send from *sender* would reach at least one live receiver."""
        if not self._connections:
            return False
        holders = self._send_cache.get(id(sender))
        if holders is None:
            holders = self._plan_for(sender).holders
        return any(holder() is not None for holder in holders)

    @property
    def receivers(self) -> list[Callable[..., Any]]:
        """The live receivers, in the order they were connected (a snapshot list).

        Assigning an empty list disconnects every receiver, as Django test code does.
        """
        with self._lock:
            connections = list(self._connections.values())
        return [r for c in connections if c.alive() and (r := c.holder()) is not None]

    @receivers.setter
    def receivers(self, value: Sequence[Any]) -> None:
        if len(value):
            raise TypeError(
                f"Only an empty list can be assigned to {self!r}.receivers (it "
                f"disconnects every receiver); use connect() to add receivers."
            )
        with self._lock:
            self._emptied = bool(self._connections) and bool(self._activity_watchers)
            self._connections.clear()
            self._by_sender.clear()
            self._invalidate(ANY_SENDER)
        if self._emptied:
            self._notify_activity()

    # -- snapshots, for tocsin.testing.isolated_signals ----------------------------------

    def _snapshot(self) -> tuple[dict[Hashable, _Connection], frozenset[Hashable]]:
        """The live connections and the dispatch_uids ever used, to restore later."""
        with self._lock:
            self._purge_dead()
            return dict(self._connections), frozenset(self._known_uids)

    def _restore(self, snapshot: tuple[dict[Hashable, _Connection], frozenset[Hashable]]) -> None:
        """Put back exactly the connections of *snapshot* (those still alive)."""
        connections, known_uids = snapshot
        with self._lock:
            was_active = bool(self._connections)
            self._purge_dead()
            for key, connection in list(self._connections.items()):
                if connections.get(key) is not connection:
                    self._remove(connection)
            missing = [
                c for key, c in connections.items() if key not in self._connections and c.alive()
            ]
            for connection in missing:
                self._connections[connection.lookup_key] = connection
                self._file(connection)
                self._invalidate(connection.sender_key)
            if missing:  # keep .receivers in connection order
                ordered = sorted(self._connections.values(), key=lambda c: c.order)
                self._connections = {c.lookup_key: c for c in ordered}
            self._known_uids = set(known_uids) | {
                c.dispatch_uid for c in self._connections.values() if c.dispatch_uid is not None
            }
            changed = was_active != bool(self._connections) or self._emptied
        if changed and self._activity_watchers:
            self._notify_activity()

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
        with self._lock:
            self._activity_watchers.append(callback)

    def unwatch_activity(self, callback: Callable[[Signal], object]) -> None:
        """Stop calling a callback given to :meth:`watch_activity` (no error if absent)."""
        with self._lock, contextlib.suppress(ValueError):
            self._activity_watchers.remove(callback)

    def _notify_activity(self) -> None:
        self._emptied = False
        for callback in list(self._activity_watchers):
            try:
                callback(self)
            except Exception:
                logger.exception("Error in activity watcher %s of %r", describe(callback), self)

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
        if self._muted:
            return []
        plan = self._plan_for(sender)
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

    def _async_in_loop_message(self, plan: _Plan, robust: bool) -> str:
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
        self, plan: _Plan, sender: Any, named: dict[str, Any], robust: bool
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
        if not self._connections or self._muted:
            return []
        plan = self._plan_for(sender)
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
        connection = self._connect(receiver, sender, False, dispatch_uid, priority)
        try:
            yield receiver
        finally:
            if connection is not None:
                self._drop(connection)

    @contextmanager
    def muted(self) -> Iterator[Signal]:
        """Within the block, sends of this signal (from any thread) call no receiver."""
        with self._lock:
            self._muted += 1
            self._invalidate(ANY_SENDER)
        try:
            yield self
        finally:
            with self._lock:
                self._muted -= 1
                self._invalidate(ANY_SENDER)


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


def _validate_receiver(receiver: Any, signal: Signal) -> None:
    if not callable(receiver):
        raise TypeError(
            f"Signal receivers must be callable. Got {receiver!r} "
            f"({type(receiver).__name__}) for {signal!r}."
        )
    if not accepts_kwargs(receiver):
        raise ValueError(
            f"Signal receivers must accept keyword arguments (**kwargs). "
            f"{describe(receiver)} does not; add **kwargs to its parameters to connect "
            f"it to {signal!r}."
        )


def _validate_options(signal: Signal, dispatch_uid: Hashable | None, priority: int) -> None:
    if dispatch_uid is not None:
        try:
            hash(dispatch_uid)
        except TypeError:
            raise TypeError(
                f"dispatch_uid must be hashable (a str is usual), not "
                f"{type(dispatch_uid).__name__}, when connecting to {signal!r}."
            ) from None
    if type(priority) is not int:
        raise TypeError(
            f"priority must be an int, not {type(priority).__name__}, when connecting "
            f"to {signal!r}."
        )


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
            _validate_receiver(func, item)
            _validate_options(item, dispatch_uid, priority)
        marks = [ReceiverMark(item, sender, weak, dispatch_uid, priority) for item in signals]
        if not _in_class_body(func):
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


def _in_class_body(func: Callable[..., Any]) -> bool:
    """Whether *func* is being defined in a class body (its qualname says ``Class.name``)."""
    qualname = getattr(func, "__qualname__", "")
    owner = qualname.rpartition(".")[0] if isinstance(qualname, str) else ""
    return bool(owner) and not owner.endswith("<locals>")
