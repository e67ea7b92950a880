"""Helpers for testing code that uses tocsin.

:class:`override_settings` changes attributes of any object (or keys of any mutable
mapping) for the duration of a block or a test, and announces each change with
:data:`tocsin.signals.setting_changed`, as Django's ``override_settings`` does::

    from tocsin.testing import override_settings

    with override_settings(config, DEBUG=True, CACHE_TTL=0):
        ...

    @override_settings(os.environ, TZ="UTC")
    async def test_something(): ...

:func:`capture` records the sends of a signal and asserts on them, with failure
messages that show every send next to what was expected::

    from tocsin.testing import capture

    with capture(order_paid) as paid:
        checkout(cart)
    paid.assert_sent_once(sender=Shop, amount=12.5)

:func:`isolated_signals` puts every signal's connections back as they were, and
:func:`install_plugin_distribution` builds and installs a real plugin distribution for
a test.  None of this needs pytest; the pytest plugin (:mod:`tocsin.pytest_plugin`)
wraps it in fixtures.
"""

from __future__ import annotations

import functools
import gc
import inspect
import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import types
import uuid
from collections.abc import (
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, overload

from tocsin._send import COMPILED
from tocsin._signal import Signal
from tocsin.signals.testing import setting_changed

__all__ = [
    "CAPTURE_PRIORITY",
    "Captured",
    "Expected",
    "PluginDistribution",
    "Sent",
    "capture",
    "install_plugin_distribution",
    "isolated_signals",
    "live_signals",
    "override_settings",
    "pip_install",
    "sent",
]

logger = logging.getLogger("tocsin.testing")

F = TypeVar("F", bound=Callable[..., Any])

_MISSING: Any = object()


class _Saved(NamedTuple):
    """What one setting was before an override, and how to put it back."""

    name: str
    old: Any  # _MISSING when the setting did not exist
    delete: bool  # restore by removing what the override added


class override_settings:  # named like Django's, and used like a function
    """Set attributes of *target* (or keys, when *target* is a mutable mapping) to
    *values*, and put everything back afterwards.

    A context manager (``with`` and ``async with``), and a decorator for functions and
    coroutine functions.  For each setting, in the order given:

    * on entry, the value is set and ``setting_changed(sender, setting=name,
      value=new, enter=True)`` is sent, once every value is in place;
    * on exit, even when the block raised, the previous value is restored (a setting
      that did not exist before is removed again) and ``setting_changed(sender,
      setting=name, value=restored, enter=False)`` is sent, ``value`` being None for a
      removed setting.

    ``sender`` is *target* itself when it is a class or a module, else its class.
    Overrides nest; each restores what it found.  They must nest: tasks or threads
    whose overrides of the same setting overlap without nesting restore each other's
    values, as with Django's (each decorated call gets its own override, though).

    ``with`` sends with ``send`` (async receivers run in a fresh event loop, so not
    inside a running one); ``async with`` and decorated coroutine functions send with
    ``asend``.

    Receivers may object: if one raises on entry, everything is restored (and
    announced), and the exception propagates.  On exit every setting is restored and
    announced whatever receivers do; the first receiver exception is raised afterwards,
    unless the block itself raised, whose exception then wins (the receiver's is
    logged under ``tocsin.testing``).
    """

    def __init__(self, target: Any, /, **values: Any) -> None:
        self.target = target
        self.values = values
        if isinstance(target, (type, types.ModuleType)):
            self.sender: Any = target
        else:
            self.sender = type(target)
        self._stack: list[list[_Saved]] = []

    def __repr__(self) -> str:
        items = ", ".join(f"{name}={value!r}" for name, value in self.values.items())
        return f"override_settings({self.target!r}, {items})"

    # -- applying and restoring -------------------------------------------------------

    def _apply(self) -> list[_Saved]:
        target = self.target
        saved: list[_Saved] = []
        if isinstance(target, MutableMapping):
            try:
                for name, value in self.values.items():
                    old = target.get(name, _MISSING)
                    target[name] = value
                    saved.append(_Saved(name, old, old is _MISSING))
            except BaseException:
                self._restore(saved)
                raise
            return saved
        own = _own_attributes(target)
        try:
            for name, value in self.values.items():
                old = getattr(target, name, _MISSING)
                was_own = own is not None and name in own
                setattr(target, name, value)
                # An attribute that now lives in the object's own __dict__ but did not
                # before (it was missing, or inherited from a class) is removed again,
                # so the inherited value shows through as before.
                added = own is not None and not was_own and name in own
                saved.append(_Saved(name, old, added or old is _MISSING))
        except BaseException:
            self._restore(saved)
            raise
        return saved

    def _restore(self, saved: list[_Saved]) -> None:
        """Put back every saved setting, last applied first (cannot be interrupted by
        receivers: no signal is sent here).
        """
        target = self.target
        mapping = isinstance(target, MutableMapping)
        for item in reversed(saved):
            if mapping:
                if item.delete:
                    target.pop(item.name, None)
                else:
                    target[item.name] = item.old
            elif item.delete:
                if hasattr(target, item.name):
                    delattr(target, item.name)
            else:
                setattr(target, item.name, item.old)

    def _current(self, name: str) -> Any:
        if isinstance(self.target, MutableMapping):
            return self.target.get(name)
        return getattr(self.target, name, None)

    def _exit_events(self, saved: list[_Saved]) -> Iterator[tuple[str, Any]]:
        self._restore(saved)
        for item in saved:
            yield item.name, None if item.old is _MISSING else self._current(item.name)

    # -- sync -------------------------------------------------------------------------

    def __enter__(self) -> override_settings:
        saved = self._apply()
        try:
            for name, value in self.values.items():
                setting_changed.send(self.sender, setting=name, value=value, enter=True)
        except BaseException:
            self._undo(saved, raising=False)
            raise
        self._stack.append(saved)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._undo(self._stack.pop(), raising=exc_type is None)

    def _undo(self, saved: list[_Saved], *, raising: bool) -> None:
        first: Exception | None = None
        for name, value in self._exit_events(saved):
            try:
                setting_changed.send(self.sender, setting=name, value=value, enter=False)
            except Exception as error:
                first = _keep_first(first, error, raising, name)
        if first is not None:
            raise first

    # -- async ------------------------------------------------------------------------

    async def __aenter__(self) -> override_settings:
        saved = self._apply()
        try:
            for name, value in self.values.items():
                await setting_changed.asend(self.sender, setting=name, value=value, enter=True)
        except BaseException:
            await self._aundo(saved, raising=False)
            raise
        self._stack.append(saved)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        await self._aundo(self._stack.pop(), raising=exc_type is None)

    async def _aundo(self, saved: list[_Saved], *, raising: bool) -> None:
        first: Exception | None = None
        for name, value in self._exit_events(saved):
            try:
                await setting_changed.asend(self.sender, setting=name, value=value, enter=False)
            except Exception as error:
                first = _keep_first(first, error, raising, name)
        if first is not None:
            raise first

    # -- decorator --------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        if isinstance(func, type) or not callable(func):
            raise TypeError(
                f"override_settings decorates functions and coroutine functions, not "
                f"{func!r}; use it as a context manager inside the test instead."
            )
        target, values = self.target, self.values
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                # A fresh override per call: concurrent calls must not share a stack.
                async with override_settings(target, **values):
                    return await func(*args, **kwargs)

            return async_inner  # type: ignore[return-value]

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with override_settings(target, **values):
                return func(*args, **kwargs)

        return inner  # type: ignore[return-value]


def _own_attributes(target: Any) -> Any:
    """The object's own attribute namespace (``__dict__``), or None when it has none."""
    try:
        return vars(target)
    except TypeError:
        return None


def _keep_first(
    first: Exception | None, error: Exception, raising: bool, name: str
) -> Exception | None:
    if first is None and raising:
        return error
    logger.error(
        "A setting_changed receiver raised while %s was being restored",
        name,
        exc_info=error,
    )
    return first


# =====================================================================================
# capture(): what was sent
# =====================================================================================

#: The priority :func:`capture` connects its recorder with: above any an application
#: would use, so the recorder runs first and records every send that reaches the
#: signal's receivers, even one that a later receiver's exception cuts short.
CAPTURE_PRIORITY = sys.maxsize

#: The methods a send comes through, as :attr:`Sent.method` names them.
SEND_METHODS = frozenset({"send", "send_robust", "asend", "asend_robust"})

#: How many frames above the recorder are searched for the send method.
_FRAME_SEARCH_DEPTH = 16
#: The modules whose frames stand between a send method and the receivers it calls.
_SEND_MODULES = frozenset({"tocsin._signal", "tocsin._send"})


class _Unset:
    """The default of an argument that was not given (None is a valid sender)."""

    def __repr__(self) -> str:
        return "<any>"


_UNSET: Any = _Unset()
_sequence = itertools.count()


class Sent:
    """One send recorded by :func:`capture`.

    ``sender`` and ``kwargs`` (the named arguments, without ``signal`` and ``sender``)
    are what the receivers were given.  ``method`` is the method the send came through:
    ``"send"``, ``"send_robust"``, ``"asend"`` or ``"asend_robust"`` (None if it cannot
    be told, say for a subclass that calls its receivers another way; where the C send
    of ``tocsin._speedups`` runs, a recorder called by hand from outside tocsin reads
    as ``"send"``, since that send leaves no frame to tell them apart).  ``index`` is
    its position in its capture; ``sequence`` its position among the sends every
    capture in this process recorded, to compare the order of different signals' sends.
    """

    __slots__ = ("index", "kwargs", "method", "sender", "sequence", "signal")

    def __init__(
        self, signal: Signal, sender: Any, kwargs: dict[str, Any], method: str | None, index: int
    ) -> None:
        self.signal = signal
        self.sender = sender
        self.kwargs = kwargs
        self.method = method
        self.index = index
        self.sequence = next(_sequence)

    def __repr__(self) -> str:
        return f"<Sent #{self.index} {self.describe()}>"

    def describe(self, width: int = 200) -> str:
        """``send(sender=..., name=value, ...)``, each value's repr cut to *width*."""
        parts = [f"sender={_short_repr(self.sender, width)}"]
        parts += [f"{name}={_short_repr(value, width)}" for name, value in self.kwargs.items()]
        return f"{self.method or '<unknown method>'}({', '.join(parts)})"

    def matches(self, expected: Expected) -> bool:
        """Whether this send carries everything *expected* names, with equal values."""
        return not _differences(expected, self)


class Expected:
    """What a send is expected to carry: a sender (or any) and some named arguments.

    Only what is named is compared; other arguments may have any value.  Values are
    compared with ``==``, the expected value on the left, so :data:`unittest.mock.ANY`
    matches anything.
    """

    __slots__ = ("named", "sender")

    def __init__(self, sender: Any = _UNSET, /, **named: Any) -> None:
        self.sender = sender
        self.named = named

    def __repr__(self) -> str:
        return f"sent({self.describe()})"

    def describe(self) -> str:
        parts = [] if self.sender is _UNSET else [f"sender={_short_repr(self.sender)}"]
        parts += [f"{name}={_short_repr(value)}" for name, value in self.named.items()]
        return ", ".join(parts) or "any arguments"

    @property
    def is_anything(self) -> bool:
        return self.sender is _UNSET and not self.named


def sent(sender: Any = _UNSET, /, **named: Any) -> Expected:
    """An expected send, for :meth:`Captured.assert_sent_in_order`::

        captured.assert_sent_in_order([sent(Shop, order=first), sent(Shop, order=second)])

    The sender may be given positionally or as ``sender=``; left out, any sender
    matches.  A plain dict of the arguments (``"sender"`` among them if it matters)
    does the same.
    """
    if "sender" in named:
        if sender is not _UNSET:
            raise TypeError("sent() got the sender twice: pass it positionally or as sender=.")
        sender = named.pop("sender")
    return Expected(sender, **named)


class Captured(Sequence[Sent]):
    """The sends of one signal recorded by :func:`capture`, in order.

    A read-only sequence of :class:`Sent` (``len``, indexing, iteration, truth), plus
    assertions.  In every ``assert_*`` method the sender is given as ``sender=`` (left
    out: any sender matches) and the other keywords are named arguments; arguments not
    named are not compared.  A failure's message shows what was expected and every
    recorded send, with, under each, how its arguments differ.
    """

    def __init__(self, signal: Signal, sender: Any = None) -> None:
        self.signal = signal
        self.sender = sender
        self._sends: list[Sent] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Captured {self.signal!r}: {len(self._sends)} sends>"

    @overload
    def __getitem__(self, index: int) -> Sent: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sent]: ...

    def __getitem__(self, index: int | slice) -> Sent | list[Sent]:
        return self._sends[index]

    def __len__(self) -> int:
        return len(self._sends)

    def __iter__(self) -> Iterator[Sent]:
        return iter(list(self._sends))

    @property
    def senders(self) -> list[Any]:
        """The sender of each send, in order."""
        return [item.sender for item in self]

    @property
    def arguments(self) -> list[dict[str, Any]]:
        """The named arguments of each send, in order."""
        return [item.kwargs for item in self]

    def clear(self) -> None:
        """Forget the sends recorded so far; recording goes on."""
        with self._lock:
            self._sends.clear()

    def _record(self, signal: object = None, sender: Any = None, **named: Any) -> None:
        """The recorder: connected to the signal while the capture is active."""
        method = _sending_method(self.signal, sys._getframe(1))
        with self._lock:
            self._sends.append(Sent(self.signal, sender, named, method, len(self._sends)))

    # -- assertions -------------------------------------------------------------------

    def assert_sent(self, /, sender: Any = _UNSET, **named: Any) -> Sent:
        """Assert that a recorded send carries these arguments; return the first one."""
        __tracebackhide__ = True
        expected = Expected(sender, **named)
        for item in self:
            if item.matches(expected):
                return item
        raise AssertionError(
            self._failure(f"to have been sent with {expected.describe()}", expected)
        )

    def assert_sent_once(self, /, sender: Any = _UNSET, **named: Any) -> Sent:
        """Assert that the signal was sent exactly once, and with these arguments (like
        ``Mock.assert_called_once_with``, except that only the named ones count)."""
        __tracebackhide__ = True
        expected = Expected(sender, **named)
        sends = list(self)
        if len(sends) == 1 and sends[0].matches(expected):
            return sends[0]
        what = "to have been sent exactly once"
        if not expected.is_anything:
            what += f" with {expected.describe()}"
        if len(sends) > 1:
            matching = sum(item.matches(expected) for item in sends)
            what += f", but it was sent {len(sends)} times ({matching} matching)"
        raise AssertionError(self._failure(what, expected))

    def assert_not_sent(self, /, sender: Any = _UNSET, **named: Any) -> None:
        """Assert that no recorded send carries these arguments; with none given, that
        the signal was not sent at all."""
        __tracebackhide__ = True
        expected = Expected(sender, **named)
        matching = [item for item in self if item.matches(expected)]
        if not matching:
            return
        what = "not to have been sent"
        if not expected.is_anything:
            what += f" with {expected.describe()}"
        lines = [
            f"Expected {self._subject()} {what}, but {len(matching)} of the "
            f"{len(self)} recorded sends did:"
        ]
        lines += [f"  #{item.index} {item.describe()}" for item in matching]
        raise AssertionError("\n".join(lines))

    def assert_sent_in_order(self, expected: Iterable[Expected | Mapping[str, Any]]) -> None:
        """Assert that sends matching each item of *expected* were recorded, in that
        order.  Other sends may come before, between and after them.

        Each item is a :func:`sent`, or a dict of arguments (with ``"sender"`` when the
        sender matters).
        """
        __tracebackhide__ = True
        wanted = [_as_expected(item) for item in expected]
        sends = list(self)
        position = 0
        matched: list[int] = []
        for number, item in enumerate(wanted):
            while position < len(sends) and not sends[position].matches(item):
                position += 1
            if position < len(sends):
                matched.append(position)
                position += 1
                continue
            lines = [f"Expected {self._subject()} to have been sent in this order:"]
            for other_number, other in enumerate(wanted):
                arrow = "->" if other_number == number else "  "
                lines.append(f"  {arrow} [{other_number}] {other.describe()}")
            if number:
                previous = sends[matched[-1]]
                where = f"after #{previous.index}, the send that matched [{number - 1}]"
            else:
                where = "at all"
            lines.append(f"but no send matches [{number}] {where}.")
            lines.append(self._listing(item))
            raise AssertionError("\n".join(lines))

    # -- messages ---------------------------------------------------------------------

    def _subject(self) -> str:
        if self.sender is None:
            return repr(self.signal)
        return f"{self.signal!r} (captured for sender {self.sender!r})"

    def _failure(self, what: str, expected: Expected) -> str:
        return f"Expected {self._subject()} {what}.\n{self._listing(expected)}"

    def _listing(self, expected: Expected) -> str:
        sends = list(self)
        if not sends:
            return "It was not sent at all while captured."
        lines = [f"Recorded sends ({len(sends)}), and how each differs:"]
        for item in sends:
            lines.append(f"  #{item.index} {item.describe()}")
            differences = _differences(expected, item)
            lines += [f"      {line}" for line in differences] or ["      (matches)"]
        return "\n".join(lines)


@contextmanager
def capture(signal: Signal, sender: Any = None) -> Iterator[Captured]:
    """Record the sends of *signal* (from *sender* only, when given) inside the block.

    ::

        from tocsin.testing import capture

        with capture(order_paid) as paid:
            checkout(cart)
        paid.assert_sent_once(sender=Shop, amount=12.5)

    How: a recorder receiver is connected (strongly, with the sender filter given, as
    any receiver would be) at :data:`CAPTURE_PRIORITY`, so it runs before the other
    receivers.  Consequently:

    * it records what the receivers are given (``user_login_failed``'s credentials
      already masked), from every send method, sync or async, from every thread, and
      tells which method each send came through;
    * code that sends only when someone listens (``has_listeners()``, as the framework
      bridges do) sends, since the recorder listens;
    * a send reaching no receiver is not recorded: one of a muted signal
      (:meth:`Signal.muted`), or one from another sender than the one captured;
    * the recorder's own ``(receiver, None)`` pair is the first item of the responses
      ``send()`` returns while the capture is active;
    * the recorded arguments are kept (not copied) until the :class:`Captured` is
      dropped, which it may be after the block: it still holds what was recorded.
    """
    if not isinstance(signal, Signal):
        raise TypeError(f"capture() takes a tocsin Signal, not {signal!r}.")
    captured = Captured(signal, sender)
    with signal.connected_to(captured._record, sender, priority=CAPTURE_PRIORITY):
        yield captured


def _sending_method(signal: Signal, frame: types.FrameType | None) -> str | None:
    """The public send method of *signal* found among the frames above the recorder.

    The C send (tocsin._speedups) has no frame: a recorder called straight from
    outside tocsin was called by it.  Its slow path is ``_send_slow``, which says.
    """
    if COMPILED and frame is not None and frame.f_globals.get("__name__") not in _SEND_MODULES:
        return "send"
    for _ in range(_FRAME_SEARCH_DEPTH):
        if frame is None:
            return None
        name = frame.f_code.co_name
        if frame.f_locals.get("self") is signal:
            if name in SEND_METHODS:
                return name
            if name == "_send_slow":
                return "send_robust" if frame.f_locals.get("robust") else "send"
        frame = frame.f_back
    return None


def _as_expected(item: Expected | Mapping[str, Any]) -> Expected:
    if isinstance(item, Expected):
        return item
    if isinstance(item, Mapping):
        return sent(**item)
    raise TypeError(
        f"assert_sent_in_order() takes sent(...) items or dicts of arguments, not {item!r}."
    )


def _equal(expected: Any, actual: Any) -> bool:
    if expected is actual:
        return True
    try:
        return bool(expected == actual)
    except Exception:
        return False


def _differences(expected: Expected, item: Sent) -> list[str]:
    """One or more lines per argument of *expected* that *item* does not match."""
    lines: list[str] = []
    if expected.sender is not _UNSET and not _equal(expected.sender, item.sender):
        lines += _difference("sender", expected.sender, item.sender)
    for name, value in expected.named.items():
        if name not in item.kwargs:
            lines.append(f"{name}: expected {_short_repr(value)}, but it was not sent")
        elif not _equal(value, item.kwargs[name]):
            lines += _difference(name, value, item.kwargs[name])
    return lines


def _difference(name: str, expected: Any, actual: Any) -> list[str]:
    left, right = _short_repr(expected, 2000), _short_repr(actual, 2000)
    if left == right:
        return [
            f"{name}: expected {_short_repr(expected)} ({type(expected).__qualname__}), got "
            f"an unequal {_short_repr(actual)} ({type(actual).__qualname__})"
        ]
    if len(left) + len(right) <= 100 or type(expected) is not type(actual):
        return [f"{name}: expected {_short_repr(expected)}, got {_short_repr(actual)}"]
    # Two long values of one type (dicts, lists, long strings): a line diff of their
    # pretty-printed forms, changed lines with two lines of context around them.
    import difflib
    import pprint

    before = pprint.pformat(expected, width=88, compact=True).splitlines()
    after = pprint.pformat(actual, width=88, compact=True).splitlines()
    diff = list(difflib.ndiff(before, after))
    changed = [i for i, line in enumerate(diff) if line[:1] in "-+?"]
    keep = {j for i in changed for j in range(i - 2, i + 3)}
    lines = [f"{name}: differs (- expected, + got):"]
    skipped = False
    for index, line in enumerate(diff):
        if index in keep:
            lines.append(f"  {line.rstrip()}")
            skipped = False
        elif not skipped:
            lines.append("  ...")
            skipped = True
    return lines


def _short_repr(value: Any, width: int = 200) -> str:
    try:
        text = repr(value)
    except Exception as error:  # a broken __repr__ must not hide the failure itself
        text = f"<{type(value).__qualname__} object; repr() raised {error!r}>"
    return text if len(text) <= width else text[: width - 3] + "..."


# =====================================================================================
# isolated_signals(): connections put back as they were
# =====================================================================================


class _Snapshot(NamedTuple):
    connections: dict[Hashable, Any]  # lookup key -> the signal's connection object
    known_uids: frozenset[Hashable]


def live_signals() -> list[Signal]:
    """Every :class:`~tocsin.Signal` alive in this process.

    tocsin keeps no registry of signals (a signal costs nothing until it is used), so
    they are found the way the garbage collector sees them, which takes some tens of
    milliseconds in a large process.
    """
    # type(), not isinstance(): isinstance() asks an object for its __class__, which a
    # lazy proxy (Django's settings, say) answers by setting itself up.
    verdicts: dict[type, bool] = {}
    found: list[Signal] = []
    for obj in gc.get_objects():
        kind = type(obj)
        verdict = verdicts.get(kind)
        if verdict is None:
            verdict = verdicts[kind] = issubclass(kind, Signal)
        if verdict:
            found.append(obj)
    return found


@contextmanager
def isolated_signals(*signals: Signal) -> Iterator[list[Signal]]:
    """Put the connections of *signals* (by default, every live signal) back afterwards.

    On exit, each signal has exactly the connections it had on entry, in their order,
    with their senders, ``dispatch_uid`` and priorities: connections made inside the
    block are removed (receivers connected by code, by ``@receiver`` in modules
    imported in the block, by plugins a manager loaded), connections removed inside the
    block are restored, and ``dispatch_uid``\\ s first seen inside the block are
    forgotten.  A receiver that was garbage-collected meanwhile stays gone.  Signals
    created inside the block are left as they are.  Yields the signals watched.

    Not meant to race with other threads connecting to the same signals.
    """
    targets = list(signals) if signals else live_signals()
    for signal in targets:
        if not isinstance(signal, Signal):
            raise TypeError(f"isolated_signals() takes tocsin Signals, not {signal!r}.")
    snapshots = [(signal, _snapshot(signal)) for signal in targets]
    try:
        yield targets
    finally:
        for signal, snapshot in snapshots:
            _restore(signal, snapshot)


# These two read and write the Signal's connection tables (see tocsin._signal): the
# same internals the plugin manager relies on (_drop), plus re-inserting a connection
# object exactly as Signal._connect inserts a new one.


def _snapshot(signal: Signal) -> _Snapshot:
    connections, known_uids = signal._snapshot()
    return _Snapshot(connections, known_uids)


def _restore(signal: Signal, snapshot: _Snapshot) -> None:
    signal._restore((snapshot.connections, snapshot.known_uids))


# =====================================================================================
# Throwaway plugin distributions
# =====================================================================================


@dataclass(frozen=True)
class PluginDistribution:
    """A plugin distribution built and installed by :func:`install_plugin_distribution`."""

    #: The plugin's name: its entry point's name, what a PluginManager lists it as.
    name: str
    distribution: str
    version: str
    #: The module the entry point names (and ``attribute`` in it, if any).
    module: str
    attribute: str | None
    group: str
    #: The directory pip installed into: put it on ``sys.path`` to make it visible.
    path: Path
    #: Every top-level module the distribution installed.
    modules: tuple[str, ...]

    @property
    def entry_point(self) -> str:
        return f"{self.module}:{self.attribute}" if self.attribute else self.module


_throwaway_numbers = itertools.count(1)


def pip_install(
    projects: Iterable[str | os.PathLike[str]],
    target: str | os.PathLike[str],
    *,
    what: str | None = None,
) -> None:
    """Build and install project folders into *target* with pip, for a test to put on
    its path: no dependencies, no build isolation, no index, so nothing is downloaded
    (the environment's own setuptools, >= 70.1, builds them).  *what* names them in the
    error raised when pip fails (default: the folders)."""
    folders = [os.fspath(project) for project in projects]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--no-compile",
        "--disable-pip-version-check",
        "--target",
        os.fspath(target),
        *folders,
    ]
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PIP_NO_CACHE_DIR": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if result.returncode:
        raise RuntimeError(
            f"pip could not build and install {what or ', '.join(folders)} (exit code "
            f"{result.returncode}). Without build isolation or an index, the test "
            f"environment needs pip and setuptools>=70.1 installed.\n--- pip's output:\n"
            f"{result.stdout}{result.stderr}"
        )


def install_plugin_distribution(
    directory: str | os.PathLike[str],
    source: str,
    *,
    name: str | None = None,
    group: str = "tocsin.plugins",
    version: str = "0.1.0",
    module: str | None = None,
    attribute: str | None = None,
    modules: Mapping[str, str] | None = None,
    distribution: str | None = None,
) -> PluginDistribution:
    """Build a plugin distribution from *source* and install it with pip into
    ``<directory>/site``; return what was installed.

    *source* is the plugin module's code (dedented first, so a triple-quoted string
    indented with the test is fine).  The distribution declares one entry point in
    *group*: ``name = "module"`` (``"module:attribute"`` with *attribute*).  *modules*
    adds further top-level modules, name -> source.  Names default to unique ones
    (``tocsin_throwaway_<n>_<token>``), so distributions never clash in one process.

    It is a real distribution: ``pip install --no-deps --no-build-isolation --no-index
    --target``, so setuptools (>= 70.1) must be installed where the tests run.  Nothing
    is put on ``sys.path``; the ``tocsin_plugin_dist`` pytest fixture does that, and
    undoes it.
    """
    token = f"{next(_throwaway_numbers)}_{uuid.uuid4().hex[:8]}"
    module = module or f"tocsin_throwaway_{token}"
    name = name or f"throwaway-{token.replace('_', '-')}"
    distribution = distribution or f"tocsin-throwaway-{token.replace('_', '-')}"
    extra = dict(modules or {})
    for module_name in (module, *extra):
        if not module_name.isidentifier():
            raise ValueError(
                f"A plugin module name must be a Python identifier (a top-level module), "
                f"not {module_name!r}."
            )
    if module in extra:
        raise ValueError(f"modules= repeats the plugin module {module!r}; give it once.")
    root = Path(directory)
    project = root / "src" / distribution
    project.mkdir(parents=True)
    sources = {module: source, **extra}
    for module_name, text in sources.items():
        (project / f"{module_name}.py").write_text(
            textwrap.dedent(text).lstrip("\n"), encoding="utf-8"
        )
    value = f"{module}:{attribute}" if attribute else module
    (project / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["setuptools>=70.1"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        f"name = {json.dumps(distribution)}\n"
        f"version = {json.dumps(version)}\n"
        'description = "A throwaway tocsin plugin made by a test."\n\n'
        f"[project.entry-points.{json.dumps(group)}]\n"
        f"{json.dumps(name)} = {json.dumps(value)}\n\n"
        "[tool.setuptools]\n"
        f"py-modules = {json.dumps(sorted(sources))}\n",
        encoding="utf-8",
    )
    site = root / "site"
    pip_install([project], site, what=f"the throwaway plugin distribution {distribution!r}")
    return PluginDistribution(
        name=name,
        distribution=distribution,
        version=version,
        module=module,
        attribute=attribute,
        group=group,
        path=site,
        modules=tuple(sorted(sources)),
    )
