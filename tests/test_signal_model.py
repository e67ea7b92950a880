"""A model-based test: a Signal against a plain-Python model of what it should do.

Hypothesis drives random sequences of connect (with or without a sender, a
dispatch_uid, weak or strong, a priority), disconnect (by receiver or by uid), send,
dropping the test's last reference to a receiver, dropping senders, and clearing.  After
each step the real signal must agree with the model on which receivers a send reaches,
in which order, and on what ``receivers`` lists.

Receivers and senders are referred to by slot numbers in the rules (never passed to
Hypothesis as values), so that dropping the machine's reference really drops the last one.
"""

from __future__ import annotations

import gc
import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tocsin import Signal

N_RECEIVER_SLOTS = 4
UIDS = ("u1", "u2")


class WeakSender:
    """A sender that can be weakly referenced: its connections die with it."""


# Sender slots.  "none" sends with None (only any-sender receivers answer); "str" and
# "int" build a fresh, equal object on every use (matched by value); "true" is the
# immortal True (by identity, and not the int 1); "w0"/"w1" are weak-referenceable
# objects and "obj" is an object() (cannot be weakly referenced), all three
# replaceable by a new object (which may reuse the old one's id()).
SENDER_SLOTS = ("none", "str", "int", "true", "w0", "w1", "obj")
REPLACEABLE = ("w0", "w1", "obj")


@dataclass
class Conn:
    receiver: str  # the receiver's name (unique per receiver object)
    sender: object  # the model's sender key; None means any sender
    weak: bool
    priority: int
    order: int


class SignalModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.signal = Signal(name="model")
        self.calls = []
        self.names = itertools.count()
        self.order = itertools.count()
        # What the test holds: one receiver per slot, and the current sender objects.
        self.receivers = {slot: self._new_receiver() for slot in range(N_RECEIVER_SLOTS)}
        self.senders = {"w0": WeakSender(), "w1": WeakSender(), "obj": object()}
        self.generation = dict.fromkeys(REPLACEABLE, 0)
        # The model.
        self.conns: dict[tuple, Conn] = {}  # insertion order == connection order

    # -- helpers -------------------------------------------------------------------

    def _new_receiver(self):
        name = f"r{next(self.names)}"
        calls = self.calls

        def receive(**kwargs):
            calls.append(name)
            return name

        receive.tag = name
        return receive

    def _sender(self, slot):
        """The object to pass as sender for *slot* (fresh, equal str/int each time)."""
        if slot == "none":
            return None
        if slot == "str":
            return "".join(["sen", "der"])
        if slot == "int":
            return int("1" * 25)
        if slot == "true":
            return True
        return self.senders[slot]

    def _key(self, slot):
        """The model's sender key for *slot*'s current sender."""
        if slot == "none":
            return None
        if slot in REPLACEABLE:
            return (slot, self.generation[slot])
        return slot

    def _settle_deaths(self):
        """Receivers neither held by the test nor by a strong connection are gone."""
        alive = {fn.tag for fn in self.receivers.values()}
        alive |= {conn.receiver for conn in self.conns.values() if not conn.weak}
        for key in [k for k, conn in self.conns.items() if conn.receiver not in alive]:
            del self.conns[key]

    def _expected(self, slot):
        key = self._key(slot)
        conns = [c for c in self.conns.values() if c.sender is None or c.sender == key]
        conns.sort(key=lambda c: (-c.priority, c.order))
        return [c.receiver for c in conns]

    # -- rules ---------------------------------------------------------------------

    @rule(
        slot=st.integers(0, N_RECEIVER_SLOTS - 1),
        sender=st.sampled_from(SENDER_SLOTS),
        weak=st.booleans(),
        uid=st.sampled_from((None, None, *UIDS)),
        priority=st.sampled_from((0, 0, 0, 1, -1)),
    )
    def connect(self, slot, sender, weak, uid, priority):
        fn = self.receivers[slot]
        key = (uid if uid is not None else ("fn", fn.tag), self._key(sender))
        if key not in self.conns:  # otherwise the first connection wins
            self.conns[key] = Conn(fn.tag, self._key(sender), weak, priority, next(self.order))
        returned = self.signal.connect(
            fn, sender=self._sender(sender), weak=weak, dispatch_uid=uid, priority=priority
        )
        assert returned is fn

    @rule(slot=st.integers(0, N_RECEIVER_SLOTS - 1), sender=st.sampled_from(SENDER_SLOTS))
    def disconnect(self, slot, sender):
        fn = self.receivers[slot]
        key = (("fn", fn.tag), self._key(sender))
        expected = self.conns.pop(key, None) is not None
        self._settle_deaths()
        assert self.signal.disconnect(fn, sender=self._sender(sender)) is expected

    @rule(uid=st.sampled_from(UIDS), sender=st.sampled_from(SENDER_SLOTS))
    def disconnect_by_uid(self, uid, sender):
        expected = self.conns.pop((uid, self._key(sender)), None) is not None
        self._settle_deaths()
        result = self.signal.disconnect(sender=self._sender(sender), dispatch_uid=uid)
        assert result is expected

    @rule(slot=st.sampled_from(SENDER_SLOTS), robust=st.booleans())
    def send(self, slot, robust):
        expected = self._expected(slot)
        self.calls.clear()
        method = self.signal.send_robust if robust else self.signal.send
        got = [response for _, response in method(self._sender(slot), value=slot)]
        assert got == expected
        assert self.calls == expected
        assert self.signal.has_listeners(self._sender(slot)) is bool(expected)

    @rule(slot=st.integers(0, N_RECEIVER_SLOTS - 1))
    def drop_receiver(self, slot):
        # The test lets go of its receiver (a fresh one takes the slot); weakly held
        # connections go with it unless a strong connection keeps it alive.
        self.receivers[slot] = self._new_receiver()
        gc.collect(0)  # cheap: receivers and senders here die by reference counting
        self._settle_deaths()

    @rule(slot=st.sampled_from(REPLACEABLE))
    def drop_sender(self, slot):
        old_key = self._key(slot)
        self.generation[slot] += 1
        self.senders[slot] = WeakSender() if slot.startswith("w") else object()
        gc.collect(0)
        if slot.startswith("w"):
            # A collected sender's connections are gone (and with them the strong
            # references they held).  An object() sender cannot be watched, so tocsin
            # keeps it alive while connected: its connections stay, matching nothing new.
            for key in [k for k, conn in self.conns.items() if conn.sender == old_key]:
                del self.conns[key]
            self._settle_deaths()
            # tocsin forgets a dead sender's connections lazily, at its next locked
            # operation; a disconnect of something never connected is one, and by the
            # contract changes nothing else.
            assert self.signal.disconnect(lambda **kwargs: None) is False

    @rule()
    def clear(self):
        self.signal.receivers = []
        self.conns.clear()

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def receivers_agree(self):
        assert [fn.tag for fn in self.signal.receivers] == [
            conn.receiver for conn in self.conns.values()
        ]

    @invariant()
    def any_sender_receivers_agree(self):
        assert self.signal.has_listeners() is bool(self._expected("none"))


TestSignalModel = SignalModel.TestCase
TestSignalModel.settings = settings(
    max_examples=100,
    stateful_step_count=35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
