"""``capture()``: record the sends of one signal (:class:`Sent`, :class:`Captured`) and
assert on them against expected sends (:class:`Expected`, :func:`sent`), with failure
messages that show every send next to what was expected."""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, overload

from tocsin._signal import Signal, sending_method

#: The priority :func:`capture` connects its recorder with: above any an application
#: would use, so the recorder runs first and records every send that reaches the
#: signal's receivers, even one that a later receiver's exception cuts short.
CAPTURE_PRIORITY = sys.maxsize


class _Unset:
    """The default of an argument that was not given (None is a valid sender)."""

    def __repr__(self) -> str:
        return "<any>"


#: The default of ``sender`` in :func:`sent` and the assertions: any sender matches.
_UNSET: Any = _Unset()
#: Numbers every recorded send, across captures, for :attr:`Sent.sequence`.
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
        method = sending_method(self.signal, sys._getframe(1))
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
    # Sends go the Python way while capturing, so that Sent.method can be read off
    # the frames (the C send has none).
    with (
        signal.registry.bypassing_send_cache(),
        signal.connected_to(captured._record, sender, priority=CAPTURE_PRIORITY),
    ):
        yield captured


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
