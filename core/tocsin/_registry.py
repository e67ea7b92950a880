"""The connection table of one signal: who receives, from whom, in which order.

Every :class:`~tocsin.Signal` owns one :class:`Registry`, and only the registry
touches its tables.  It holds:

* the connections, one :class:`Connection` per (receiver or ``dispatch_uid``, sender);
* the same connections filed per sender, so a send looks at two buckets (its sender's
  and the any-sender one), never at every connection;
* two caches of each sender's receivers in dispatch order: :class:`Plan` (for the slow
  path and ``asend``) and the send cache, a tuple of holders per ``id(sender)`` that the
  hot path (``tocsin._send``) reads directly;
* the weak-reference callbacks that notice collected receivers and senders, and the
  purge that forgets them;
* snapshot and restore, for test isolation.

Connect and disconnect are O(1) whatever the number of receivers: they change one
bucket and drop the cache entries the change affects, and the next send from that
sender rebuilds its tuple once.  Everything a send needs (weak or strong, sync or async,
order) is decided here, at connect time.

The plugin manager and ``tocsin.testing`` use this interface (``find``, ``drop``,
``snapshot``, ``restore``, :attr:`Connection.owner`), never the tables themselves.
"""

from __future__ import annotations

import _thread
import contextlib
import contextvars
import itertools
import types
import weakref
from collections.abc import Callable, Hashable, Iterator

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
    required_arguments,
    sender_key_of,
    strong_holder,
)
from tocsin._send import COMPILED

# typing is not imported at run time (see tocsin._refs): ``import tocsin`` would cost
# twice as much.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple, final
else:
    from tocsin._refs import NamedTuple, final

__all__ = [
    "CACHE_LIMIT",
    "EMPTY_PLAN",
    "Connection",
    "Ownership",
    "Plan",
    "Registry",
    "Snapshot",
    "owned_by",
    "validate_fit",
    "validate_options",
    "validate_receiver",
]

#: How many senders without receivers of their own get a cache entry.  They all share
#: the any-sender receivers, so past this many (say, a fresh object as sender on every
#: send) they are answered from the slow path instead of growing the cache forever.
CACHE_LIMIT = 4096


@final
class Ownership:
    """The connections made inside one :func:`owned_by` block, and who owns them."""

    __slots__ = ("connections", "owner")

    def __init__(self, owner: object) -> None:
        #: Recorded on every connection made in the block (``Connection.owner``).
        self.owner = owner
        #: The new connections made in the block, in order (not those that were
        #: already connected, which belong to whoever connected them first).
        self.connections: list[Connection] = []


_ownership: contextvars.ContextVar[Ownership | None] = contextvars.ContextVar(
    "tocsin_ownership", default=None
)
#: How many owned_by() blocks are open in the process.  connect() reads the context
#: variable only while some are: a global read costs a third of ContextVar.get().
_open_ownerships = 0
_ownerships_lock = _thread.allocate_lock()  # threading.Lock, without threading


@contextlib.contextmanager
def owned_by(owner: object) -> Iterator[Ownership]:
    """Within the block, every new connection, to any signal, made in this context
    (thread, or task) is *owner*'s: its ``owner`` says so, and the yielded
    :class:`Ownership` lists it.  The plugin manager imports a plugin inside one, so it
    knows every connection the import made, by ``@receiver`` or by ``connect()``
    (issue 13).  Blocks nest; the innermost owns."""
    global _open_ownerships
    ownership = Ownership(owner)
    token = _ownership.set(ownership)
    with _ownerships_lock:
        _open_ownerships += 1
    try:
        yield ownership
    finally:
        with _ownerships_lock:
            _open_ownerships -= 1
        _ownership.reset(token)


@final
class Connection:
    """One receiver connected to one signal for one sender (or for any): a handle.

    The plugin manager keeps these to know exactly which connections a plugin made;
    :meth:`drop` removes this connection and no other (a later connection of the same
    receiver is a different handle).
    """

    __slots__ = (
        "dispatch_uid",
        "fast_holder",
        "holder",
        "is_async",
        "lookup_key",
        "order",
        "owner",
        "priority",
        "registry",
        "sender_holder",
        "sender_key",
        "strong",
    )

    # Made only by Registry.connect, field by field (calling the class would cost as
    # much again as the stores, on a path that must stay cheap).

    #: ``(receiver identity or ("uid", dispatch_uid), sender key)``: unique per registry.
    lookup_key: Hashable
    #: The sender's key (see :meth:`Registry.sender_key`), or ``ANY_SENDER``.
    sender_key: Hashable
    #: Returns the receiver, or None once it was collected.
    holder: Holder
    #: What send tuples hold: for a weakly held function under the pure-Python send,
    #: the plain (callback-less, shared) ``weakref.ref``, which it calls a little faster.
    fast_holder: Holder
    #: The receiver itself when connected with ``weak=False`` (keeps it alive), else None.
    strong: Callable[..., Any] | None
    #: For senders matched by identity: returns the sender, or None once collected.
    sender_holder: Callable[[], Any] | None
    #: Higher runs first.
    priority: int
    #: Connection order, the tie-breaker among equal priorities.
    order: int
    #: Whether calling the receiver returns an awaitable.
    is_async: bool
    #: As given to ``connect``.
    dispatch_uid: Hashable | None
    #: Who asked for this connection (a plugin manager's record of a plugin), or None.
    owner: object
    #: The registry this connection belongs to (or belonged to, once dropped).
    registry: Registry

    @property
    def receiver(self) -> Callable[..., Any] | None:
        """The receiver, or None once it was garbage-collected."""
        return self.holder()

    @property
    def weak(self) -> bool:
        """Whether the receiver is held weakly (``connect(weak=True)``)."""
        return self.strong is None

    @property
    def sender(self) -> Any:
        """The sender this connection receives from (None: any sender)."""
        if self.sender_holder is not None:
            return self.sender_holder()
        sender_key = self.sender_key
        if sender_key is ANY_SENDER:
            return None
        return sender_key[1] if type(sender_key) is tuple else sender_key  # (int, n) or str

    def alive(self) -> bool:
        """Whether both the receiver and (for an identity sender) the sender still live."""
        if self.holder() is None:
            return False
        return self.sender_holder is None or self.sender_holder() is not None

    def serves(self, sender: Any) -> bool:
        """Whether this connection's sender is *sender* itself (not an id look-alike)."""
        return self.sender_holder is None or self.sender_holder() is sender

    def drop(self) -> bool:
        """Disconnect exactly this connection; False if it is no longer connected."""
        return self.registry.drop(self)

    def reinstate(self) -> bool:
        """Connect this (dropped) connection again, in its old place in the dispatch
        order; False if its receiver or sender is gone, or its place was taken."""
        return self.registry.reinstate(self)

    def __repr__(self) -> str:
        receiver = self.holder()
        who = describe(receiver) if receiver is not None else "<collected receiver>"
        return f"<Connection {who} to {self.registry.signal!r}>"


_new_connection = object.__new__

#: A sender's connections: most senders have a single receiver, and a dict for each of
#: them would be the largest object a connection costs, so a lone connection is kept
#: as it is, and a dict (lookup key -> connection) holds two or more.
_Bucket = Connection | dict[Hashable, Connection]


def _bucket_connections(bucket: _Bucket | None) -> list[Connection]:
    """A snapshot of the connections in *bucket* (none for None)."""
    if bucket is None:
        return []
    if type(bucket) is dict:
        return list(bucket.values())
    assert type(bucket) is Connection
    return [bucket]


class Plan(NamedTuple):
    """The receivers of one sender, as a send calls them: the synchronous ones in
    dispatch order, then the async ones in dispatch order (Django's order)."""

    #: Holders of the synchronous receivers.
    sync: tuple[Holder, ...]
    #: Holders of the receivers whose call returns an awaitable.
    asynchronous: tuple[Holder, ...]


EMPTY_PLAN = Plan((), ())


class Snapshot(NamedTuple):
    """A registry's live connections, in connection order."""

    connections: dict[Hashable, Connection]


@final
class Registry:
    """The connections of one signal, and the caches a send reads (see the module).

    Every method is thread-safe.  Methods named ``*_locked`` expect :attr:`lock` held.
    """

    __slots__ = (
        "_activity_watchers",
        "_by_sender",
        "_dead_receivers",
        "_dead_senders",
        "_emptied",
        "_on_receiver_death",
        "_on_sender_death",
        "_order",
        "_watchers",
        "connections",
        "lock",
        "muted",
        "plans",
        "provides",
        "send_cache",
        "signal",
        "uncached",
    )

    def __init__(self, signal: object, provides: frozenset[str] | None = None) -> None:
        #: The signal these connections belong to (named in errors, given to watchers).
        self.signal = signal
        #: The named arguments the signal declares it sends (its ``providing_args``),
        #: or None when it declares none: then any receiver with ``**kwargs`` fits.
        self.provides = provides
        #: Guards every table below but the two caches, which are only ever replaced
        #: entry by entry (atomic dict operations) so that sends need no lock.
        self.lock = _thread.allocate_lock()  # what threading.Lock is
        #: lookup key -> connection, in connection order.  The send reads only its
        #: emptiness, through the same dict object (never replaced, only mutated).
        self.connections: dict[Hashable, Connection] = {}
        #: id(sender) -> receiver holders, for senders whose receivers are all
        #: synchronous and whose id() cannot be handed to another object while the entry
        #: exists (immortal, or watched: the entry goes the moment the sender is
        #: collected).  Read by the hot path through the same dict object.
        self.send_cache: dict[Hashable, tuple[Holder, ...]] = {}
        #: sender key -> Plan, for every sender the slow path has served.
        self.plans: dict[Hashable, Plan] = {}
        #: How many ``muted()`` blocks are open; while any is, sends call nobody.
        self.muted = 0
        #: How many :meth:`bypassing_send_cache` blocks are open.
        self.uncached = 0
        self._order = itertools.count()
        # sender key -> that sender's connections (see _Bucket).
        self._by_sender: dict[Hashable, _Bucket] = {}
        # id(sender) -> weak reference that drops its send_cache entry at collection.
        self._watchers: dict[int, SenderRef] = {}
        # Filled by weak-reference callbacks (which may run in any thread, at any time,
        # even while the lock is held); emptied under the lock.
        self._dead_receivers: list[Hashable] = []
        self._dead_senders: list[Hashable] = []
        self._activity_watchers: list[Callable[[Any], object]] = []
        self._emptied = False  # set under the lock, told to watchers after it
        # Bound once: every weakly held receiver and sender gets one of these callbacks.
        self._on_receiver_death = self._receiver_died
        self._on_sender_death = self._sender_died

    # -- keys ---------------------------------------------------------------------------

    @staticmethod
    def sender_key(sender: Any) -> Hashable:
        """The key *sender* is filed under: ``ANY_SENDER`` for None, else
        :func:`tocsin._refs.sender_key` (str and int by value, the rest by id).

        The reference for the copy spelled out in :meth:`connect`; a test compares them.
        """
        return ANY_SENDER if sender is None else sender_key_of(sender)

    # -- connecting ---------------------------------------------------------------------

    def connect(
        self,
        receiver: Callable[..., Any],
        sender: Any,
        weak: bool,
        dispatch_uid: Hashable | None,
        priority: int,
        owner: object = None,
    ) -> Connection | None:
        """Connect; return the new connection, or None when one already existed.

        *owner* is recorded on the connection; without one, the innermost
        :func:`owned_by` block of this context owns it, if any.  Raises
        ``TypeError``/``ValueError`` for a receiver or option that cannot work, before
        anything is changed.
        """
        if dispatch_uid is not None or type(priority) is not int:
            validate_options(self.signal, dispatch_uid, priority)
            if not dispatch_uid:  # "" or 0: no uid at all, as Django's `if dispatch_uid:`
                dispatch_uid = None
        if self.provides is not None:
            validate_fit(receiver, self.signal, self.provides)
        # Plain functions, by far the usual receiver, are answered from their code
        # flags; connecting tens of thousands of them must stay cheap.
        if type(receiver) is types.FunctionType:
            flags = receiver.__code__.co_flags
            if not flags & CO_VARKEYWORDS:
                validate_receiver(receiver, self.signal)  # raises the ValueError
            is_async = bool(flags & CO_COROUTINE) or (
                bool(receiver.__dict__) and is_async_callable(receiver)
            )
            identity: Hashable = id(receiver)
        else:
            validate_receiver(receiver, self.signal)
            is_async = is_async_callable(receiver)
            identity = receiver_identity(receiver)
        if dispatch_uid is not None:
            identity = ("uid", dispatch_uid)
        # self.sender_key(sender) spelled out, since by-value senders need no holder.
        # Inline: a call is 7-14% of a connect (issue 11 measured), and tens of
        # thousands of connects at import time are common.
        sender_holder = None
        if sender is None:
            sender_key: Hashable = ANY_SENDER
        elif type(sender) is str:
            sender_key = sender
        elif type(sender) is int:
            sender_key = (int, sender)
        else:
            sender_key = id(sender)
            sender_holder = self._hold_sender(sender, sender_key)
        lookup_key = (identity, sender_key)
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
        ownership = _ownership.get() if _open_ownerships and owner is None else None
        if ownership is not None:
            owner = ownership.owner
        self.lock.acquire()  # not `with`: half the cost, see disconnect()
        try:
            was_active = bool(self.connections)
            if self._dead_receivers or self._dead_senders:
                self._purge_dead_locked()
            existing = self.connections.get(lookup_key)
            if existing is not None:
                if existing.alive():
                    return None
                self._remove_locked(existing)
            connection = _new_connection(Connection)
            connection.lookup_key = lookup_key
            connection.sender_key = sender_key
            connection.holder = holder
            connection.fast_holder = fast_holder
            connection.strong = strong
            connection.sender_holder = sender_holder
            connection.priority = priority
            connection.order = next(self._order)
            connection.is_async = is_async
            connection.dispatch_uid = dispatch_uid
            connection.owner = owner
            connection.registry = self
            self.connections[lookup_key] = connection
            # self._file_locked(connection) spelled out for the usual first connection
            # of a sender; a second one joining a first goes to the reference.
            bucket = self._by_sender.get(sender_key)
            if bucket is None:
                self._by_sender[sender_key] = connection
            elif type(bucket) is dict:
                bucket[lookup_key] = connection
            else:
                self._file_locked(connection)
            # self._invalidate_locked(sender_key) spelled out, for the same reason.
            if sender_key is ANY_SENDER:
                if self.send_cache:
                    self.send_cache.clear()
                if self.plans:
                    self.plans.clear()
            else:
                self.send_cache.pop(sender_key, None)
                self.plans.pop(sender_key, None)
        finally:
            self.lock.release()
        if ownership is not None:
            ownership.connections.append(connection)
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
                f"Cannot connect {describe(receiver)} to {self.signal!r} weakly: "
                f"{type(receiver).__name__} objects do not support weak references. "
                f"Pass weak=False to keep a strong reference."
            ) from None
        ref.lookup_key = lookup_key
        return ref, None

    def _hold_sender(self, sender: Any, sender_key: Hashable) -> Callable[[], Any]:
        # A sender matched by identity must not be mistaken for a later object that
        # reuses its id(): watch it weakly, or keep it alive when it cannot be watched.
        try:
            ref = SenderRef(sender, self._on_sender_death)
        except TypeError:
            return strong_holder(sender)
        ref.key = sender_key
        return ref

    # -- disconnecting ------------------------------------------------------------------

    def disconnect(
        self, receiver: Callable[..., Any] | None, sender: Any, dispatch_uid: Hashable | None
    ) -> bool:
        """Remove the connection of *receiver* (or *dispatch_uid*) for *sender*.

        True if one was removed, False otherwise (as in Django, for a ``dispatch_uid``
        never connected too).
        """
        # self.sender_key(sender) and connection.serves(sender) spelled out, as in
        # connect(): each call is some 5% of a disconnect.
        sender_key = ANY_SENDER if sender is None else sender_key_of(sender)
        if dispatch_uid:  # as in connect(), a falsy uid is no uid
            identity: Hashable = ("uid", dispatch_uid)
        elif type(receiver) is types.FunctionType:
            identity = id(receiver)
        else:
            assert receiver is not None
            identity = receiver_identity(receiver)
        # acquire/release rather than `with`: half the cost, on a path that must stay
        # cheap with tens of thousands of receivers.
        self.lock.acquire()
        try:
            if self._dead_receivers or self._dead_senders:
                self._purge_dead_locked()
            connection = self.connections.get((identity, sender_key))
            if connection is None:
                return False
            holder = connection.sender_holder
            if holder is not None and holder() is not sender:
                return False
            self._remove_locked(connection)
            return True
        finally:
            self.lock.release()
            if self._emptied:
                self._notify_activity()

    def find(
        self, receiver: Callable[..., Any], sender: Any, dispatch_uid: Hashable | None
    ) -> Connection | None:
        """The live connection of (*receiver* or *dispatch_uid*, *sender*), if it is
        *receiver*'s: with a ``dispatch_uid``, another receiver may hold it."""
        sender_key = self.sender_key(sender)
        identity = ("uid", dispatch_uid) if dispatch_uid else receiver_identity(receiver)
        with self.lock:
            connection = self.connections.get((identity, sender_key))
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

    def drop(self, connection: Connection) -> bool:
        """Remove exactly *connection*, if it is still connected."""
        try:
            with self.lock:
                if self.connections.get(connection.lookup_key) is not connection:
                    return False
                self._remove_locked(connection)
                return True
        finally:
            if self._emptied:
                self._notify_activity()

    def swap(
        self, connection: Connection, receiver: Callable[..., Any], weak: bool
    ) -> Connection | None:
        """Put *receiver* in *connection*'s place, in one step under the lock: the same
        sender, ``dispatch_uid``, priority, owner and place in the dispatch order, so no
        send sees neither.  None if *connection* is no longer connected; if *receiver*
        already is (for that sender), *connection* just goes.  Used when a declared
        receiver's stand-in gives way to the receiver (see tocsin._declared)."""
        validate_receiver(receiver, self.signal)
        uid = connection.dispatch_uid
        identity: Hashable = ("uid", uid) if uid is not None else receiver_identity(receiver)
        lookup_key = (identity, connection.sender_key)
        holder, strong = self._hold_receiver(receiver, weak, lookup_key)
        is_async = is_async_callable(receiver)
        try:
            with self.lock:
                if self.connections.get(connection.lookup_key) is not connection:
                    return None
                self._remove_locked(connection)
                if lookup_key in self.connections:
                    return None
                new = _new_connection(Connection)
                new.lookup_key = lookup_key
                new.sender_key = connection.sender_key
                new.holder = new.fast_holder = holder
                new.strong = strong
                new.sender_holder = connection.sender_holder
                new.priority = connection.priority
                new.order = connection.order  # where the stand-in was
                new.is_async = is_async
                new.dispatch_uid = uid
                new.owner = connection.owner
                new.registry = self
                self.connections[lookup_key] = new
                self._file_locked(new)
                self._invalidate_locked(new.sender_key)
                return new
        finally:
            if self._emptied:
                self._notify_activity()

    def reinstate(self, connection: Connection) -> bool:
        """See :meth:`Connection.reinstate`."""
        was_active = True
        try:
            with self.lock:
                if connection.lookup_key in self.connections or not connection.alive():
                    return False
                was_active = bool(self.connections)
                self.connections[connection.lookup_key] = connection
                self._file_locked(connection)
                self._invalidate_locked(connection.sender_key)
                return True
        finally:
            if (not was_active or self._emptied) and self._activity_watchers:
                self._notify_activity()

    def clear(self) -> None:
        """Disconnect every receiver (``signal.receivers = []``, as Django tests do)."""
        with self.lock:
            self._emptied = bool(self.connections) and bool(self._activity_watchers)
            self.connections.clear()
            self._by_sender.clear()
            self._invalidate_locked(ANY_SENDER)
        if self._emptied:
            self._notify_activity()

    # -- the tables, under the lock -----------------------------------------------------

    def _file_locked(self, connection: Connection) -> None:
        """Add *connection* to its sender's bucket."""
        sender_key = connection.sender_key
        bucket = self._by_sender.get(sender_key)
        if bucket is None:
            self._by_sender[sender_key] = connection
        elif type(bucket) is dict:
            bucket[connection.lookup_key] = connection
        else:
            assert type(bucket) is Connection
            pair = {bucket.lookup_key: bucket, connection.lookup_key: connection}
            self._by_sender[sender_key] = pair

    def _remove_locked(self, connection: Connection) -> None:
        """Forget a connection."""
        del self.connections[connection.lookup_key]
        if not self.connections and self._activity_watchers:
            self._emptied = True  # told to the watchers once the lock is released
        sender_key = connection.sender_key
        bucket = self._by_sender[sender_key]
        if bucket is connection:
            del self._by_sender[sender_key]
        else:
            assert type(bucket) is dict
            del bucket[connection.lookup_key]
            if not bucket:
                del self._by_sender[sender_key]
        self._invalidate_locked(sender_key)

    def _invalidate_locked(self, sender_key: Hashable) -> None:
        """Drop cached receivers that a change for *sender_key* affects.

        Any-sender receivers are part of every sender's tuple, so a change to them
        starts the caches afresh: O(1) per change, and the next send per sender
        rebuilds once.  The caches are cleared in place: the send holds them.
        """
        if sender_key is ANY_SENDER:
            if self.send_cache:
                self.send_cache.clear()
            if self.plans:
                self.plans.clear()
        else:
            self.send_cache.pop(sender_key, None)
            self.plans.pop(sender_key, None)

    # -- collected receivers and senders ------------------------------------------------

    def _receiver_died(
        self, ref: ReceiverRef | ReceiverWeakMethod | ReceiverWeakBuiltinMethod
    ) -> None:
        # Runs inside garbage collection: no lock, only an atomic append.
        self._dead_receivers.append(ref.lookup_key)

    def _sender_died(self, ref: SenderRef) -> None:
        # The id() is free for reuse from now on: drop its cache entries at once (dict
        # operations are atomic), and let the next locked operation forget the rest.
        self.send_cache.pop(ref.key, None)
        self.plans.pop(ref.key, None)
        self._dead_senders.append(ref.key)

    def _unwatched(self, ref: SenderRef) -> None:
        # A sender with a hot-path entry was collected: atomic dict operations only.
        self.send_cache.pop(ref.key, None)
        if self._watchers.get(ref.key) is ref:
            self._watchers.pop(ref.key, None)

    def purge_dead_locked(self) -> None:
        """Forget connections whose receiver or sender was collected (lock held).

        Public for Django's ``with signal.lock: signal._clear_dead_receivers()``.
        """
        self._purge_dead_locked()

    def _purge_dead_locked(self) -> None:
        while self._dead_receivers:
            connection = self.connections.get(self._dead_receivers.pop())
            if connection is not None and not connection.alive():
                self._remove_locked(connection)
        while self._dead_senders:
            bucket = self._by_sender.get(self._dead_senders.pop())
            for connection in _bucket_connections(bucket):
                if not connection.alive():
                    self._remove_locked(connection)

    # -- looking up ---------------------------------------------------------------------

    def plan_for(self, sender: Any) -> Plan:
        """The receivers for *sender*, from the cache or freshly built (and cached)."""
        sender_key = sender_key_of(sender)
        plan = self.plans.get(sender_key)
        if plan is not None:
            return plan
        with self.lock:
            self._purge_dead_locked()
            plan = self._build_plan_locked(sender, sender_key)
            if self.muted or (sender_key not in self._by_sender and len(self.plans) >= CACHE_LIMIT):
                return plan
            self.plans[sender_key] = plan
            if not plan.asynchronous and not self.uncached and self._watch_locked(sender):
                self.send_cache[id(sender)] = plan.sync
        return plan

    def _watch_locked(self, sender: Any) -> bool:
        """Make sure *sender*'s id() is not reused while it has a hot-path entry.

        Senders matched by value (str, int) and those that cannot be weakly referenced
        get no hot-path entry; they are served from ``plans``, one step slower.
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

    def _build_plan_locked(self, sender: Any, sender_key: Hashable) -> Plan:
        connections = [c for c in _bucket_connections(self._by_sender.get(ANY_SENDER)) if c.alive()]
        own = self._by_sender.get(sender_key)
        if own is not None:
            connections += [c for c in _bucket_connections(own) if c.alive() and c.serves(sender)]
        if not connections:
            return EMPTY_PLAN
        connections.sort(key=lambda c: (-c.priority, c.order))
        return Plan(
            tuple(c.fast_holder for c in connections if not c.is_async),
            tuple(c.fast_holder for c in connections if c.is_async),
        )

    def has_listeners(self, sender: Any) -> bool:
        """Whether a send from *sender* would reach at least one live receiver."""
        if not self.connections:
            return False
        holders = self.send_cache.get(id(sender))
        if holders is None:
            plan = self.plan_for(sender)
            holders = plan.sync + plan.asynchronous
        return any(holder() is not None for holder in holders)

    def receivers(self) -> list[Callable[..., Any]]:
        """The live receivers, in connection order (a new list)."""
        with self.lock:
            connections = list(self.connections.values())
        return [r for c in connections if c.alive() and (r := c.holder()) is not None]

    def live_connections(self) -> list[Connection]:
        """The live connections, in connection order (a new list)."""
        with self.lock:
            connections = list(self.connections.values())
        return [c for c in connections if c.alive()]

    def also_provides(self, *names: str) -> None:
        """Count *names* as sent too, for the connect-time check, beyond the signal's
        documented ``providing_args``: what some of its senders add (the catalogue's
        signals get ``response=`` from Flask, ``origin=`` from Django, ...)."""
        if self.provides is not None:
            self.provides = self.provides | frozenset(names)

    def invalidate_all(self) -> None:
        """Drop every sender's cached receivers (Django's ``sender_receivers_cache.clear()``)."""
        with self.lock:
            self._invalidate_locked(ANY_SENDER)

    # -- muting -------------------------------------------------------------------------

    @contextlib.contextmanager
    def muting(self) -> Iterator[None]:
        """Within the block, sends (from any thread) call no receiver."""
        with self.lock:
            self.muted += 1
            self._invalidate_locked(ANY_SENDER)
        try:
            yield
        finally:
            with self.lock:
                self.muted -= 1
                self._invalidate_locked(ANY_SENDER)

    @contextlib.contextmanager
    def bypassing_send_cache(self) -> Iterator[None]:
        """Within the block, every send takes the Python slow path (the C send has no
        frame, and ``tocsin.testing.capture`` tells send from send_robust by frames)."""
        with self.lock:
            self.uncached += 1
            self._invalidate_locked(ANY_SENDER)
        try:
            yield
        finally:
            with self.lock:
                self.uncached -= 1

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The live connections, to :meth:`restore`."""
        with self.lock:
            self._purge_dead_locked()
            return Snapshot(dict(self.connections))

    def restore(self, snapshot: Snapshot) -> None:
        """Put back exactly the connections of *snapshot* (those still alive)."""
        connections = snapshot.connections
        with self.lock:
            was_active = bool(self.connections)
            self._purge_dead_locked()
            for key, connection in list(self.connections.items()):
                if connections.get(key) is not connection:
                    self._remove_locked(connection)
            missing = [
                c for key, c in connections.items() if key not in self.connections and c.alive()
            ]
            for connection in missing:
                self.connections[connection.lookup_key] = connection
                self._file_locked(connection)
                self._invalidate_locked(connection.sender_key)
            if missing:  # keep connection order; in place, since the send reads this dict
                ordered = sorted(self.connections.values(), key=lambda c: c.order)
                self.connections.clear()
                self.connections.update((c.lookup_key, c) for c in ordered)
            changed = was_active != bool(self.connections) or self._emptied
        if changed and self._activity_watchers:
            self._notify_activity()

    # -- watching activity --------------------------------------------------------------

    def watch_activity(self, callback: Callable[[Any], object]) -> None:
        """See :meth:`tocsin.Signal.watch_activity`."""
        with self.lock:
            self._activity_watchers.append(callback)

    def unwatch_activity(self, callback: Callable[[Any], object]) -> None:
        """See :meth:`tocsin.Signal.unwatch_activity`."""
        with self.lock, contextlib.suppress(ValueError):
            self._activity_watchers.remove(callback)

    def _notify_activity(self) -> None:
        self._emptied = False
        for callback in list(self._activity_watchers):
            try:
                callback(self.signal)
            except Exception:
                import logging  # imported when first needed: it is slow to import

                logging.getLogger("tocsin.dispatch").exception(
                    "Error in activity watcher %s of %r", describe(callback), self.signal
                )


def validate_options(signal: object, dispatch_uid: Hashable | None, priority: int) -> None:
    """Raise a ``TypeError`` naming *signal* for an unhashable uid or a non-int priority."""
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


def validate_receiver(receiver: Any, signal: object) -> None:
    """Raise the error Django raises (with more to go on) for a receiver that cannot
    be connected to *signal*: not callable, or without ``**kwargs``."""
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


def validate_fit(
    receiver: Any, signal: object, provides: frozenset[str], *, unbound_method: bool = False
) -> None:
    """Raise a ``TypeError`` when *receiver* requires a named argument that *signal*
    declares it never sends: it would fail at every send (issue 16).  With
    *unbound_method*, the first parameter is the instance's, given when it is bound."""
    required = required_arguments(receiver)
    if required and unbound_method:
        required = required[1:]
    if not required:
        return
    missing = [name for name in required if name not in provides and name not in _ALWAYS_SENT]
    if missing:
        sent = ", ".join(sorted(provides)) or "no named arguments"
        names = ", ".join(repr(name) for name in missing)
        raise TypeError(
            f"{describe(receiver)} requires {names}, which {signal!r} never sends (it "
            f"sends signal, sender and {sent}). Give {'it' if len(missing) == 1 else 'them'}"
            f" a default, or read {'it' if len(missing) == 1 else 'them'} from **kwargs."
        )


#: What every receiver is called with, whatever the signal declares.
_ALWAYS_SENT = frozenset({"signal", "sender"})
