"""The core contract of tocsin.Signal and @receiver (DESIGN.md, "Contract: the core").

Every test builds its own Signal, so tests never share state.  Receivers are real
functions, bound methods, lambdas and callable instances; nothing of tocsin is mocked.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import weakref

import pytest

from tocsin import (
    ReceiverMark,
    Signal,
    receiver,
)

# -- helpers ---------------------------------------------------------------------------


def named(name, log=None):
    """A receiver that records its name in *log* (if given) and returns its name."""

    def receive(**kwargs):
        if log is not None:
            log.append(name)
        return name

    receive.tag = name
    return receive


_KEPT = []


def keep(fn):
    """Hold *fn* for the rest of the test (receivers are weakly held by default)."""
    _KEPT.append(fn)
    return fn


@pytest.fixture(autouse=True)
def _release_kept():
    yield
    _KEPT.clear()


def values(responses):
    """The responses of a send, without the receivers."""
    return [response for _, response in responses]


def receivers_of(responses):
    return [r for r, _ in responses]


class Model:
    """A weak-referenceable sender, like a Django model class instance."""


class SubModel(Model):
    pass


class Slotted:
    """Instances cannot be weakly referenced (no __weakref__ slot)."""

    __slots__ = ("value",)

    def __init__(self, value=0):
        self.value = value


class AlwaysEqual:
    """Equal to everything and always hashing alike: must still match by identity."""

    def __eq__(self, other):
        return True

    def __hash__(self):
        return 0


class Handler:
    """A callable instance receiver (weak-referenceable)."""

    def __init__(self, log=None, name="handler"):
        self.log = log
        self.name = name

    def __call__(self, **kwargs):
        if self.log is not None:
            self.log.append(self.name)
        return self.name


class SlotHandler:
    """A callable instance that cannot be weakly referenced."""

    __slots__ = ()

    def __call__(self, **kwargs):
        return "slot-handler"


class Listener:
    """Receivers as bound methods."""

    def __init__(self, log=None):
        self.log = log if log is not None else []

    def on_event(self, sender, **kwargs):
        self.log.append(("on_event", sender))
        return "method"

    def no_kwargs(self, sender):
        return None


def collect():
    gc.collect()
    gc.collect()


def gone(ref):
    collect()
    return ref() is None


# A spread of senders, for tests that must hold for every kind of sender: None, exact
# str and int (matched by value), immortal bool, weak-referenceable instances and
# classes, and objects that cannot be weakly referenced or hashed.
SENDER_FACTORIES = {
    "none": lambda: None,
    "str": lambda: "".join(["sh", "op"]),
    "small-int": lambda: int("7"),
    "big-int": lambda: int("123456789012345678901234567890"),
    "bool": lambda: True,
    "class": lambda: Model,
    "instance": Model,
    "object": object,
    "slotted": Slotted,
    "dict": dict,
    "list": list,
    "tuple": lambda: tuple(range(2)),
    "float": lambda: float("1.5"),
}


# -- construction, name, repr ----------------------------------------------------------


def test_signal_defaults():
    sig = Signal()
    assert sig.name is None
    assert sig.providing_args == ()
    assert sig.receivers == []
    assert sig.has_listeners() is False
    assert sig.send(None) == []
    assert sig.send_robust(None) == []
    assert "Signal" in repr(sig)
    assert hex(id(sig)) in repr(sig)


def test_providing_args_use_caching_and_name_are_accepted():
    sig = Signal(providing_args=["order", "amount"], use_caching=True, name="shop.order_paid")
    assert sig.providing_args == ("order", "amount")
    assert sig.use_caching is True
    assert sig.name == "shop.order_paid"
    assert "'shop.order_paid'" in repr(sig)
    assert "order" in repr(sig)
    assert "amount" in repr(sig)


def test_providing_args_accepts_any_iterable_of_names():
    sig = Signal(providing_args=(name for name in ["a", "b"]))
    assert sig.providing_args == ("a", "b")


def test_providing_args_as_a_bare_string_is_a_type_error():
    with pytest.raises(TypeError, match="providing_args"):
        Signal(providing_args="order")


def test_providing_args_must_be_identifiers():
    with pytest.raises(TypeError, match="providing_args"):
        Signal(providing_args=["not an identifier"])
    with pytest.raises(TypeError, match="providing_args"):
        Signal(providing_args=[1])


def test_name_must_be_a_string():
    with pytest.raises(TypeError, match="name"):
        Signal(name=42)


class Shop:
    paid = Signal()
    refunded = Signal(name="custom.refunded")


def test_set_name_names_a_class_attribute_signal():
    assert Shop.paid.name == "Shop.paid"
    assert "'Shop.paid'" in repr(Shop.paid)


def test_set_name_keeps_an_explicit_name():
    assert Shop.refunded.name == "custom.refunded"


# -- connect, disconnect, has_listeners, receivers -------------------------------------


def test_connect_returns_the_receiver_and_send_calls_it_with_signal_and_sender():
    sig = Signal()
    calls = []

    def on_event(sender, **kwargs):
        calls.append((sender, kwargs))
        return "ok"

    assert sig.connect(on_event) is on_event
    sender = Model()
    responses = sig.send(sender, order=1, amount=2.5)
    assert responses == [(on_event, "ok")]
    assert calls == [(sender, {"signal": sig, "order": 1, "amount": 2.5})]


def test_connect_works_as_a_decorator_and_accepts_fn_alias():
    sig = Signal()

    @sig.connect
    def first(**kwargs):
        return 1

    def second(**kwargs):
        return 2

    assert sig.connect(fn=second) is second
    assert values(sig.send(None)) == [1, 2]
    assert sig.disconnect(fn=second) is True
    assert values(sig.send(None)) == [1]


def test_connect_rejects_receiver_and_a_different_fn():
    sig = Signal()
    with pytest.raises(TypeError):
        sig.connect(named("a"), fn=named("b"))
    with pytest.raises(TypeError):
        sig.connect()
    assert sig.receivers == []


def test_send_without_receivers_returns_empty_list():
    sig = Signal()
    assert sig.send(Model) == []
    assert sig.send("x", a=1) == []


def test_same_receiver_connected_twice_is_one_connection():
    sig = Signal()
    log = []
    a = named("a", log)
    sig.connect(a)
    sig.connect(a)
    sig.connect(a, weak=False)
    assert len(sig.receivers) == 1
    assert values(sig.send(None)) == ["a"]
    assert log == ["a"]


def test_same_receiver_for_two_senders_is_two_connections():
    sig = Signal()
    a = named("a")
    first, second = Model(), Model()
    sig.connect(a, sender=first)
    sig.connect(a, sender=second)
    assert len(sig.receivers) == 2
    assert values(sig.send(first)) == ["a"]
    assert values(sig.send(second)) == ["a"]
    assert sig.disconnect(a, sender=first) is True
    assert values(sig.send(first)) == []
    assert values(sig.send(second)) == ["a"]


def test_disconnect_returns_true_once_then_false():
    sig = Signal()
    a = named("a")
    sig.connect(a)
    assert sig.disconnect(a) is True
    assert sig.disconnect(a) is False
    assert sig.receivers == []
    assert sig.send(None) == []


def test_disconnect_of_never_connected_receiver_is_false():
    sig = Signal()
    a = named("a")
    sig.connect(a)
    assert sig.disconnect(named("b")) is False
    assert sig.receivers == [a]


def test_disconnect_needs_the_matching_sender():
    sig = Signal()
    a = named("a")
    sender = Model()
    sig.connect(a, sender=sender)
    assert sig.disconnect(a) is False  # connected for `sender`, not for any sender
    assert sig.disconnect(a, sender=Model()) is False
    assert values(sig.send(sender)) == ["a"]
    assert sig.disconnect(a, sender=sender) is True
    assert sig.send(sender) == []


def test_disconnect_without_receiver_or_uid_is_a_type_error():
    sig = Signal()
    sig.connect(keep(named("a")))
    with pytest.raises(TypeError, match="dispatch_uid"):
        sig.disconnect()
    assert len(sig.receivers) == 1


def test_disconnect_bound_method_with_a_fresh_bound_method_object():
    sig = Signal()
    listener = Listener()
    sig.connect(listener.on_event)
    # Each attribute access makes a new bound-method object; identity is (self, func).
    assert listener.on_event is not listener.on_event
    assert sig.disconnect(listener.on_event) is True
    assert sig.receivers == []


def test_bound_methods_of_two_instances_are_two_receivers():
    sig = Signal()
    one, two = Listener(), Listener()
    sig.connect(one.on_event)
    sig.connect(two.on_event)
    sig.connect(one.on_event)
    assert len(sig.receivers) == 2
    sig.send("s")
    assert one.log == [("on_event", "s")]
    assert two.log == [("on_event", "s")]


def test_has_listeners():
    sig = Signal()
    a = named("a")
    sender, other = Model(), Model()
    assert sig.has_listeners() is False
    assert sig.has_listeners(sender) is False
    sig.connect(a, sender=sender)
    assert sig.has_listeners(sender) is True
    assert sig.has_listeners(other) is False
    assert sig.has_listeners() is False  # only receivers for any sender count for None
    sig.connect(a)
    assert sig.has_listeners() is True
    assert sig.has_listeners(other) is True
    sig.disconnect(a)
    sig.disconnect(a, sender=sender)
    assert sig.has_listeners(sender) is False
    assert sig.has_listeners() is False


def test_receivers_is_list_like():
    sig = Signal()
    assert sig.receivers == []
    assert len(sig.receivers) == 0
    assert not sig.receivers
    a, b, c = named("a"), named("b"), named("c")
    sig.connect(a)
    sig.connect(b, sender="x")
    sig.connect(c, priority=5)
    assert len(sig.receivers) == 3
    assert list(sig.receivers) == [a, b, c]  # connection order, not dispatch order
    assert a in sig.receivers
    sig.disconnect(b, sender="x")
    assert sig.receivers == [a, c]


def test_receivers_counts_only_live_connections():
    sig = Signal()
    keep = named("keep")
    temp = named("temp")
    sig.connect(keep)
    sig.connect(temp)
    assert len(sig.receivers) == 2
    del temp
    collect()
    assert len(sig.receivers) == 1
    assert sig.receivers == [keep]


def test_assigning_empty_list_to_receivers_disconnects_everything():
    sig = Signal()
    log = []
    sig.connect(keep(named("a", log)))
    sig.connect(keep(named("b", log)), sender="x", weak=False)
    sig.connect(keep(named("c", log)), dispatch_uid="c")
    sig.send(None)  # warm the caches
    sig.send("x")
    log.clear()
    sig.receivers = []
    assert sig.receivers == []
    assert sig.has_listeners() is False
    assert sig.has_listeners("x") is False
    assert sig.send(None) == []
    assert sig.send("x") == []
    assert log == []
    # And the signal still works afterwards.
    d = named("d")
    sig.connect(d)
    assert values(sig.send("x")) == ["d"]


def test_assigning_a_non_empty_list_to_receivers_is_refused():
    sig = Signal()
    a = named("a")
    sig.connect(a)
    with pytest.raises(TypeError):
        sig.receivers = [named("b")]
    assert sig.receivers == [a]


# -- @receiver -------------------------------------------------------------------------


def test_receiver_decorator_with_one_signal():
    sig = Signal()

    @receiver(sig)
    def on_event(sender, **kwargs):
        return "decorated"

    assert callable(on_event)
    assert on_event.__name__ == "on_event"  # the function itself, not a wrapper
    assert sig.receivers == [on_event]
    assert sig.send(None) == [(on_event, "decorated")]
    assert on_event.__tocsin_receivers__ == [ReceiverMark(sig, None, True, None, 0)]


def test_receiver_decorator_with_a_list_of_signals():
    one, two, three = Signal(), Signal(), Signal()

    @receiver([one, two], sender=Model, dispatch_uid="uid", priority=2, weak=False)
    def on_event(sender, **kwargs):
        return "decorated"

    assert one.send(Model) == [(on_event, "decorated")]
    assert two.send(Model) == [(on_event, "decorated")]
    assert three.send(Model) == []
    assert one.send(SubModel) == []
    marks = on_event.__tocsin_receivers__
    assert marks == [
        ReceiverMark(one, Model, False, "uid", 2),
        ReceiverMark(two, Model, False, "uid", 2),
    ]
    assert marks[0].signal is one
    assert marks[1].signal is two
    assert one.disconnect(dispatch_uid="uid", sender=Model) is True
    assert two.send(Model) == [(on_event, "decorated")]


def test_receiver_decorator_with_a_tuple_of_signals():
    one, two = Signal(), Signal()

    @receiver((one, two))
    def on_event(**kwargs):
        return 1

    assert values(one.send(None)) == [1]
    assert values(two.send(None)) == [1]


def test_stacked_receiver_decorators_accumulate_marks():
    one, two = Signal(), Signal()

    @receiver(two, sender="b")
    @receiver(one, sender="a")
    def on_event(**kwargs):
        return 1

    assert [mark.signal for mark in on_event.__tocsin_receivers__] == [one, two]
    assert [mark.sender for mark in on_event.__tocsin_receivers__] == ["a", "b"]
    assert values(one.send("a")) == [1]
    assert values(two.send("b")) == [1]
    assert one.send("b") == []


def test_receiver_decorator_holds_weakly_by_default():
    sig = Signal()

    def declare():
        @receiver(sig)
        def temporary(**kwargs):
            return 1

        return weakref.ref(temporary)

    ref = declare()
    assert gone(ref)
    assert sig.receivers == []


def test_receiver_decorator_rejects_non_signals():
    with pytest.raises(TypeError, match="Signal"):
        receiver("not a signal")
    with pytest.raises(TypeError, match="Signal"):
        receiver([Signal(), object()])


def test_receiver_decorator_validates_before_connecting_anything():
    one, two = Signal(), Signal()

    def no_kwargs(sender):
        return None

    with pytest.raises(ValueError, match="keyword arguments"):
        receiver([one, two])(no_kwargs)
    assert one.receivers == []
    assert two.receivers == []
    assert not hasattr(no_kwargs, "__tocsin_receivers__")


# -- order and priority ----------------------------------------------------------------


def test_receivers_run_and_return_in_registration_order():
    sig = Signal()
    log = []
    names = [f"r{i}" for i in range(12)]
    funcs = [named(name, log) for name in names]
    for func in funcs:
        sig.connect(func)
    for _ in range(2):  # first send builds the cache, the second uses it
        log.clear()
        responses = sig.send(None)
        assert receivers_of(responses) == funcs
        assert values(responses) == names
        assert log == names


def test_registration_order_interleaves_any_sender_and_sender_specific_receivers():
    sig = Signal()
    log = []
    a, b, c, d = (named(n, log) for n in "abcd")
    sender = Model()
    sig.connect(a, sender=sender)
    sig.connect(b)
    sig.connect(c, sender=sender)
    sig.connect(d)
    assert values(sig.send(sender)) == ["a", "b", "c", "d"]
    assert values(sig.send(Model())) == ["b", "d"]
    assert log == ["a", "b", "c", "d", "b", "d"]


def test_reconnecting_after_disconnect_goes_to_the_end():
    sig = Signal()
    a, b, c = named("a"), named("b"), named("c")
    for func in (a, b, c):
        sig.connect(func)
    sig.disconnect(a)
    sig.connect(a)
    assert values(sig.send(None)) == ["b", "c", "a"]
    assert sig.receivers == [b, c, a]


def test_priority_higher_first_ties_in_registration_order():
    sig = Signal()
    log = []
    sig.connect(keep(named("low", log)), priority=-5)
    sig.connect(keep(named("default1", log)))
    sig.connect(keep(named("high1", log)), priority=10)
    sig.connect(keep(named("default2", log)), priority=0)
    sig.connect(keep(named("high2", log)), priority=10)
    sig.connect(keep(named("mid", log)), priority=3, sender="s")
    expected = ["high1", "high2", "mid", "default1", "default2", "low"]
    assert values(sig.send("s")) == expected
    assert log == expected
    assert values(sig.send("other")) == ["high1", "high2", "default1", "default2", "low"]


def test_priority_via_receiver_decorator():
    sig = Signal()

    @receiver(sig)
    def first(**kwargs):
        return "first"

    @receiver(sig, priority=1)
    def second(**kwargs):
        return "second"

    assert values(sig.send(None)) == ["second", "first"]
    assert second.__tocsin_receivers__[0].priority == 1


@pytest.mark.parametrize("priority", [1.5, "1", None, True])
def test_priority_must_be_an_int(priority):
    sig = Signal()
    with pytest.raises(TypeError, match="priority"):
        sig.connect(named("a"), priority=priority)
    assert sig.receivers == []


# -- dispatch_uid ----------------------------------------------------------------------


def test_dispatch_uid_first_connection_wins():
    sig = Signal()
    log = []
    first, second = named("first", log), named("second", log)
    sig.connect(first, dispatch_uid="uid")
    sig.connect(second, dispatch_uid="uid")
    sig.connect(first, dispatch_uid="uid")
    assert sig.receivers == [first]
    assert values(sig.send(None)) == ["first"]
    assert log == ["first"]


def test_dispatch_uid_is_per_sender():
    sig = Signal()
    first, second = named("first"), named("second")
    sig.connect(first, sender="a", dispatch_uid="uid")
    sig.connect(second, sender="b", dispatch_uid="uid")
    assert values(sig.send("a")) == ["first"]
    assert values(sig.send("b")) == ["second"]


def test_dispatch_uid_and_plain_connection_of_one_function_are_distinct():
    # The lookup key is (dispatch_uid or receiver identity, sender), as in Django.
    sig = Signal()
    a = named("a")
    sig.connect(a, dispatch_uid="uid")
    sig.connect(a)
    assert values(sig.send(None)) == ["a", "a"]
    assert sig.disconnect(a) is True
    assert values(sig.send(None)) == ["a"]


def test_disconnect_by_dispatch_uid():
    sig = Signal()
    a, b = named("a"), named("b")
    sig.connect(a, dispatch_uid="uid-a")
    sig.connect(b)
    assert sig.disconnect(dispatch_uid="uid-a") is True
    assert values(sig.send(None)) == ["b"]
    # Already disconnected: False, not an error (teardown may run twice).
    assert sig.disconnect(dispatch_uid="uid-a") is False
    # The uid is free again: a different function may now take it.
    c = named("c")
    sig.connect(c, dispatch_uid="uid-a")
    assert values(sig.send(None)) == ["b", "c"]


def test_disconnect_by_receiver_does_not_remove_uid_connection():
    sig = Signal()
    a = named("a")
    sig.connect(a, dispatch_uid="uid")
    assert sig.disconnect(a) is False
    assert values(sig.send(None)) == ["a"]


def test_disconnect_by_uid_needs_the_matching_sender():
    sig = Signal()
    sender = Model()
    sig.connect(keep(named("a")), sender=sender, dispatch_uid="uid")
    assert sig.disconnect(dispatch_uid="uid") is False
    assert sig.disconnect(dispatch_uid="uid", sender=Model()) is False
    assert sig.disconnect(dispatch_uid="uid", sender=sender) is True


def test_disconnect_unknown_dispatch_uid_returns_false_as_django_does():
    sig = Signal(name="shop.paid")
    sig.connect(keep(named("a")), dispatch_uid="known")
    assert sig.disconnect(dispatch_uid="typo") is False
    assert len(sig.receivers) == 1


def test_dispatch_uid_known_to_another_signal_is_unknown_here():
    one, two = Signal(), Signal()
    one.connect(keep(named("a")), dispatch_uid="uid")
    assert two.disconnect(dispatch_uid="uid") is False
    assert len(one.receivers) == 1


@pytest.mark.parametrize("falsy", ["", 0])
def test_a_falsy_dispatch_uid_is_no_uid_as_in_django(falsy):
    sig = Signal()
    a, b = keep(named("a")), keep(named("b"))
    sig.connect(a, dispatch_uid=falsy)
    sig.connect(b, dispatch_uid=falsy)  # not deduplicated: neither has a uid
    assert receivers_of(sig.send(None)) == [a, b]
    assert sig.disconnect(a, dispatch_uid=falsy) is True
    assert receivers_of(sig.send(None)) == [b]


def test_dispatch_uid_of_a_failed_connect_stays_unknown():
    sig = Signal()

    def no_kwargs(sender):
        return None

    with pytest.raises(ValueError, match="keyword arguments"):
        sig.connect(no_kwargs, dispatch_uid="uid")
    assert sig.disconnect(dispatch_uid="uid") is False


def test_dispatch_uid_may_be_any_hashable():
    sig = Signal()
    sig.connect(keep(named("a")), dispatch_uid=("module", 3))
    assert sig.disconnect(dispatch_uid=("module", 3)) is True


def test_unhashable_dispatch_uid_is_a_type_error():
    sig = Signal()
    with pytest.raises(TypeError, match="dispatch_uid"):
        sig.connect(named("a"), dispatch_uid=["not", "hashable"])
    assert sig.receivers == []


# -- sender filters --------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SENDER_FACTORIES))
def test_sender_none_receives_from_every_sender(kind):
    sig = Signal()
    sender = SENDER_FACTORIES[kind]()
    any_sender = named("any")
    sig.connect(any_sender)
    for _ in range(2):  # cold, then cached
        assert sig.send(sender) == [(any_sender, "any")]
        assert sig.send_robust(sender) == [(any_sender, "any")]
        assert sig.has_listeners(sender) is True


@pytest.mark.parametrize("kind", sorted(set(SENDER_FACTORIES) - {"none"}))
def test_sender_specific_receiver_hears_only_its_sender(kind):
    sig = Signal()
    sender = SENDER_FACTORIES[kind]()
    other = Model()
    mine = named("mine")
    any_sender = named("any")
    sig.connect(mine, sender=sender)
    sig.connect(any_sender)
    for _ in range(2):
        assert values(sig.send(sender)) == ["mine", "any"]
        assert values(sig.send(other)) == ["any"]
        assert values(sig.send(None)) == ["any"]
        assert sig.has_listeners(sender) is True
    assert sig.disconnect(mine, sender=sender) is True
    assert values(sig.send(sender)) == ["any"]
    assert sig.disconnect(mine, sender=sender) is False


def test_str_senders_match_by_value():
    sig = Signal()
    connected_with = "".join(["ord", "er"])
    sent_with = "".join(["or", "der"])
    assert connected_with == sent_with
    assert connected_with is not sent_with
    mine = named("mine")
    sig.connect(mine, sender=connected_with)
    assert values(sig.send(sent_with)) == ["mine"]
    assert values(sig.send("order")) == ["mine"]
    assert sig.has_listeners(sent_with) is True
    assert sig.send("orders") == []
    assert sig.disconnect(mine, sender="".join(["o", "rder"])) is True
    assert sig.send(sent_with) == []


@pytest.mark.parametrize("text", ["7", "-3", "300", "123456789012345678901234567890"])
def test_int_senders_match_by_value(text):
    sig = Signal()
    connected_with, sent_with = int(text), int(text)
    if abs(connected_with) > 256:
        assert connected_with is not sent_with
    mine = named("mine")
    sig.connect(mine, sender=connected_with)
    assert values(sig.send(sent_with)) == ["mine"]
    assert values(sig.send(int(text))) == ["mine"]
    assert sig.send(int(text) + 1) == []
    assert sig.disconnect(mine, sender=int(text)) is True
    assert sig.send(sent_with) == []


def test_str_and_int_senders_do_not_collide():
    sig = Signal()
    sig.connect(keep(named("int")), sender=1)
    sig.connect(keep(named("str")), sender="1")
    assert values(sig.send(1)) == ["int"]
    assert values(sig.send("1")) == ["str"]


def test_bool_senders_match_by_identity_not_as_ints():
    sig = Signal()
    sig.connect(keep(named("one")), sender=1)
    sig.connect(keep(named("true")), sender=True)
    sig.connect(keep(named("zero")), sender=0)
    assert values(sig.send(1)) == ["one"]
    assert values(sig.send(True)) == ["true"]
    assert values(sig.send(False)) == []
    assert values(sig.send(0)) == ["zero"]


@pytest.mark.parametrize(
    "factory",
    [
        lambda: float("1.5"),
        lambda: tuple(range(2)),
        lambda: frozenset([1]),
        object,
        Model,
        AlwaysEqual,
        Slotted,
        dict,
        list,
    ],
    ids=[
        "float",
        "tuple",
        "frozenset",
        "object",
        "instance",
        "always-equal",
        "slotted",
        "dict",
        "list",
    ],
)
def test_other_senders_match_by_identity(factory):
    sig = Signal()
    connected_with, lookalike = factory(), factory()
    assert connected_with is not lookalike
    mine = named("mine")
    sig.connect(mine, sender=connected_with)
    assert values(sig.send(connected_with)) == ["mine"]
    assert sig.send(lookalike) == []
    assert sig.has_listeners(lookalike) is False
    assert sig.disconnect(mine, sender=lookalike) is False
    assert sig.disconnect(mine, sender=connected_with) is True
    assert sig.send(connected_with) == []


def test_many_distinct_senders():
    # Far more senders than any cache holds: every send is still answered correctly.
    sig = Signal()
    any_sender = named("any")
    sig.connect(any_sender)
    senders = [Model() for _ in range(6000)]
    for sender in senders:
        assert sig.send(sender) == [(any_sender, "any")]
    chosen = senders[::500]
    mine = named("mine")
    for sender in chosen:
        sig.connect(mine, sender=sender)
    later = named("later")
    sig.connect(later)
    for index, sender in enumerate(senders):
        expected = ["any", "mine", "later"] if index % 500 == 0 else ["any", "later"]
        assert values(sig.send(sender)) == expected
    for number in range(6000):  # by-value senders too
        assert values(sig.send(number)) == ["any", "later"]
        assert values(sig.send(f"s{number}")) == ["any", "later"]


def test_class_senders_do_not_match_subclasses():
    sig = Signal()
    sig.connect(keep(named("model")), sender=Model)
    assert values(sig.send(Model)) == ["model"]
    assert sig.send(SubModel) == []
    assert sig.send(Model()) == []


@pytest.mark.parametrize("factory", [dict, list], ids=["dict", "list"])
def test_unhashable_senders(factory):
    sig = Signal()
    sender = factory()
    mine, any_sender = named("mine"), named("any")
    sig.connect(mine, sender=sender)
    sig.connect(any_sender)
    assert values(sig.send(sender)) == ["mine", "any"]
    if isinstance(sender, list):  # mutate it: same object, different value and hash
        sender.append(1)
    else:
        sender["a"] = 1
    assert values(sig.send(sender)) == ["mine", "any"]
    assert values(sig.send_robust(sender)) == ["mine", "any"]
    assert sig.has_listeners(sender) is True
    assert sig.disconnect(mine, sender=sender) is True
    assert values(sig.send(sender)) == ["any"]


@pytest.mark.parametrize("factory", [object, Slotted], ids=["object", "slotted"])
def test_senders_that_cannot_be_weakly_referenced(factory):
    sig = Signal()
    sender = factory()
    with pytest.raises(TypeError):
        weakref.ref(sender)
    log = []
    mine = named("mine", log)
    sig.connect(mine, sender=sender)
    for _ in range(3):
        assert values(sig.send(sender)) == ["mine"]
    assert values(sig.send_robust(sender)) == ["mine"]
    assert sig.send(factory()) == []
    assert log == ["mine"] * 4
    assert sig.disconnect(mine, sender=sender) is True
    assert sig.send(sender) == []


def _make_objects_until_ids_reused(factory, dead_ids, attempts=20000):
    """Create (and keep alive) new objects until some reuse one of *dead_ids*."""
    keep, reused = [], []
    for _ in range(attempts):
        candidate = factory()
        keep.append(candidate)
        if id(candidate) in dead_ids:
            reused.append(candidate)
            if len(reused) >= min(5, len(dead_ids)):
                break
    return reused, keep


def _senders_with_spacers(factory, count=50):
    """*count* live senders, interleaved with live objects of the same kind, so that
    once the senders are freed their memory stays with this kind of object (and the
    allocator hands the same addresses, hence the same ids, to new ones)."""
    senders, spacers = [], []
    for _ in range(count):
        senders.append(factory())
        spacers.append(factory())
    return senders, spacers


@pytest.mark.parametrize("factory", [Model, Handler], ids=["instance", "callable-instance"])
def test_collected_sender_receivers_never_fire_for_an_id_reusing_object(factory):
    sig = Signal()
    log = []
    any_sender = named("any", log)
    mine = named("mine", log)
    sig.connect(any_sender)
    senders, spacers = _senders_with_spacers(factory)
    for sender in senders:
        sig.connect(mine, sender=sender)
        sig.send(sender)  # populate every cache for this sender
        sig.send(sender)
        sig.has_listeners(sender)
    assert len(sig.receivers) == 1 + len(senders)
    dead_ids = {id(sender) for sender in senders}
    del senders, sender
    collect()
    assert sig.receivers == [any_sender]  # the dead senders' connections are gone
    log.clear()
    reused, keep = _make_objects_until_ids_reused(factory, dead_ids)
    if not reused:
        pytest.skip("the allocator never reused an id; nothing to check")
    for candidate in reused:
        assert sig.send(candidate) == [(any_sender, "any")]
        assert sig.send_robust(candidate) == [(any_sender, "any")]
        assert sig.has_listeners(candidate) is True
        assert sig.disconnect(mine, sender=candidate) is False
    assert "mine" not in log
    # A connection for the new object works normally.
    sig.connect(mine, sender=reused[0])
    assert values(sig.send(reused[0])) == ["any", "mine"]
    del keep, spacers


def test_collected_sender_id_reuse_without_any_other_operation():
    # The senders die between two sends, with no connect/disconnect in between, and
    # with no other receiver: a stale cache entry would be the only thing answering.
    sig = Signal()
    mine = named("mine")
    senders, spacers = _senders_with_spacers(Model)
    for sender in senders:
        sig.connect(mine, sender=sender)
    for sender in senders:
        assert values(sig.send(sender)) == ["mine"]
        assert values(sig.send(sender)) == ["mine"]
    dead_ids = {id(sender) for sender in senders}
    del senders, sender
    reused, keep = _make_objects_until_ids_reused(Model, dead_ids)
    if not reused:
        pytest.skip("the allocator never reused an id; nothing to check")
    for candidate in reused:
        assert sig.send(candidate) == []
        assert sig.has_listeners(candidate) is False
    del keep, spacers


@pytest.mark.parametrize("factory", [object, Slotted], ids=["object", "slotted"])
def test_released_unweakrefable_sender_id_reuse(factory):
    # Senders that cannot be weakly referenced are held while connected; once their
    # connection goes (disconnect, or a collected receiver), a new object may take the
    # id, and must not inherit anything.
    sig = Signal()
    log = []
    any_sender = named("any", log)
    mine = named("mine", log)
    sig.connect(any_sender)
    dead_ids = set()
    senders, spacers = _senders_with_spacers(factory, 30)
    for i, sender in enumerate(senders):
        if i % 2:
            sig.connect(mine, sender=sender)
            sig.send(sender)
            assert sig.disconnect(mine, sender=sender) is True
        else:
            dying = named("dying", log)
            sig.connect(dying, sender=sender)
            sig.send(sender)
            del dying  # a plain function: gone at once, without the cycle collector
            sig.send(None)  # any operation; the dead connection may be purged lazily
        dead_ids.add(id(sender))
    del senders, sender
    sig.disconnect(mine)  # purges what is dead, releasing the last senders held
    collect()
    assert sig.receivers == [any_sender]
    log.clear()
    reused, keep = _make_objects_until_ids_reused(factory, dead_ids)
    if not reused:
        pytest.skip("the allocator never reused an id; nothing to check")
    for candidate in reused:
        assert sig.send(candidate) == [(any_sender, "any")]
        assert sig.has_listeners(candidate) is True
    assert log == ["any"] * len(reused)
    del keep, spacers


def test_collected_receiver_id_reuse_does_not_block_a_new_receiver():
    sig = Signal()
    temporaries, spacers = _senders_with_spacers(lambda: named("t"), 30)
    for temporary in temporaries:
        sig.connect(temporary)
    assert len(sig.send(None)) == 30
    dead_ids = {id(temporary) for temporary in temporaries}
    del temporaries, temporary
    collect()
    assert sig.receivers == []
    keep = []
    checked = 0
    for i in range(20000):
        fresh = named(f"fresh{i}")
        keep.append(fresh)
        if id(fresh) in dead_ids:
            sig.connect(fresh)
            assert fresh in sig.receivers
            assert (fresh, f"fresh{i}") in sig.send(None)
            checked += 1
            if checked >= 5:
                break
    if not checked:
        pytest.skip("the allocator never reused an id; nothing to check")
    del keep, spacers


# -- weak references -------------------------------------------------------------------


def _function():
    def temporary(**kwargs):
        return "function"

    return temporary


def _lambda():
    return lambda **kwargs: "lambda"


def _bound_method():
    return Listener().on_event


def _callable_instance():
    return Handler(name="instance")


def _partial():
    def base(tag, **kwargs):
        return tag

    return functools.partial(base, "partial")


RECEIVER_FACTORIES = {
    "function": _function,
    "lambda": _lambda,
    "bound-method": _bound_method,
    "callable-instance": _callable_instance,
    "partial": _partial,
}


@pytest.mark.parametrize("kind", sorted(RECEIVER_FACTORIES))
def test_weak_receiver_disappears_when_collected(kind):
    sig = Signal()
    keep = named("keep")
    sig.connect(keep)
    temporary = RECEIVER_FACTORIES[kind]()
    ref = weakref.WeakMethod(temporary) if kind == "bound-method" else weakref.ref(temporary)
    sig.connect(temporary)
    sig.connect(temporary, sender="s")
    assert len(sig.receivers) == 3
    assert len(sig.send("s")) == 3  # populate caches
    assert len(sig.send(None)) == 2
    del temporary
    assert gone(ref)
    assert sig.receivers == [keep]
    assert sig.send(None) == [(keep, "keep")]
    assert sig.send("s") == [(keep, "keep")]
    assert sig.send_robust("s") == [(keep, "keep")]
    sig.disconnect(keep)
    assert sig.has_listeners() is False
    assert sig.has_listeners("s") is False


@pytest.mark.parametrize("kind", sorted(RECEIVER_FACTORIES))
def test_strong_receiver_stays_alive(kind):
    sig = Signal()
    temporary = RECEIVER_FACTORIES[kind]()
    expected = temporary(sender=None)
    sig.connect(temporary, weak=False)
    del temporary
    collect()
    responses = sig.send(None)
    assert values(responses) == [expected]
    assert len(sig.receivers) == 1
    # Disconnecting the strong connection releases it.
    held = responses[0][0]
    ref = weakref.WeakMethod(held) if kind == "bound-method" else weakref.ref(held)
    assert sig.disconnect(held) is True
    del held, responses
    assert gone(ref)


def test_weak_bound_method_lives_as_long_as_its_object():
    sig = Signal()
    listener = Listener()
    sig.connect(listener.on_event)  # the bound-method object itself is a temporary
    collect()
    assert values(sig.send("s")) == ["method"]
    assert listener.log == [("on_event", "s")]
    ref = weakref.ref(listener)
    del listener
    assert gone(ref)
    assert sig.send("s") == []
    assert sig.receivers == []


def test_strong_and_weak_connections_of_one_receiver():
    # A strong connection keeps the receiver alive, so its weak connections live on.
    sig = Signal()
    temporary = named("t")
    ref = weakref.ref(temporary)
    sig.connect(temporary, sender="a")
    sig.connect(temporary, sender="b", weak=False)
    del temporary
    collect()
    assert ref() is not None
    assert values(sig.send("a")) == ["t"]
    assert values(sig.send("b")) == ["t"]
    assert sig.disconnect(ref(), sender="b") is True
    assert gone(ref)
    assert sig.send("a") == []
    assert sig.receivers == []


def test_unweakrefable_receiver_with_weak_true_is_a_type_error():
    sig = Signal()
    handler = SlotHandler()
    with pytest.raises(TypeError, match="weak=False"):
        sig.connect(handler)
    assert sig.receivers == []
    sig.connect(handler, weak=False)
    assert sig.send(None) == [(handler, "slot-handler")]


def test_weak_receiver_replaced_after_collection_with_same_dispatch_uid():
    sig = Signal()
    first = named("first")
    sig.connect(first, dispatch_uid="uid")
    del first
    collect()
    second = named("second")
    sig.connect(second, dispatch_uid="uid")  # the dead one no longer holds the uid
    assert values(sig.send(None)) == ["second"]


# -- validation ------------------------------------------------------------------------

CALLABLE_MESSAGE = "Signal receivers must be callable."
KWARGS_MESSAGE = "Signal receivers must accept keyword arguments (**kwargs)."


@pytest.mark.parametrize("value", [42, 3.5, "receiver", [1], object()])
def test_non_callable_receiver_is_a_type_error(value):
    sig = Signal()
    with pytest.raises(TypeError) as excinfo:
        sig.connect(value)
    assert str(excinfo.value).startswith(CALLABLE_MESSAGE)
    assert sig.receivers == []


def _no_kwargs_function():
    def no_kwargs(sender, signal):
        return None

    return no_kwargs


class NoKwargsHandler:
    def __call__(self, sender, signal):
        return None


def _no_kwargs_partial():
    def base(tag, sender, signal):
        return tag

    return functools.partial(base, "x")


NO_KWARGS = {
    "function": _no_kwargs_function,
    "lambda": lambda: lambda sender, signal: None,
    "bound-method": lambda: Listener().no_kwargs,
    "callable-instance": NoKwargsHandler,
    "partial": _no_kwargs_partial,
}


@pytest.mark.parametrize("kind", sorted(NO_KWARGS))
def test_receiver_without_kwargs_is_a_value_error(kind):
    sig = Signal()
    fn = NO_KWARGS[kind]()
    with pytest.raises(ValueError, match=r"\*\*kwargs") as excinfo:
        sig.connect(fn)
    assert str(excinfo.value).startswith(KWARGS_MESSAGE)
    with pytest.raises(ValueError, match=r"\*\*kwargs") as excinfo:
        sig.connect(fn, weak=False)
    assert str(excinfo.value).startswith(KWARGS_MESSAGE)
    assert sig.receivers == []


def test_receivers_with_kwargs_of_every_kind_are_accepted():
    sig = Signal()
    keep = [factory() for factory in RECEIVER_FACTORIES.values()]
    for fn in keep:
        sig.connect(fn)
    assert len(sig.receivers) == len(keep)
    assert sorted(values(sig.send(None))) == sorted(
        ["function", "lambda", "method", "instance", "partial"]
    )


def _connect_error(sig, fn, **kwargs):
    """Connect, returning (exception type, message) or None; holds nothing afterwards."""
    try:
        sig.connect(fn, **kwargs)
    except (TypeError, ValueError) as error:
        return type(error), str(error)
    return None


@pytest.mark.parametrize("kind", sorted(NO_KWARGS))
def test_failed_validation_keeps_no_reference_to_the_receiver(kind):
    sig = Signal()
    fn = NO_KWARGS[kind]()
    ref = weakref.WeakMethod(fn) if kind == "bound-method" else weakref.ref(fn)
    error = _connect_error(sig, fn)
    assert error is not None
    assert error[0] is ValueError
    assert error[1].startswith(KWARGS_MESSAGE)
    assert sig.receivers == []
    del fn
    assert gone(ref)


@pytest.mark.parametrize("kind", sorted(RECEIVER_FACTORIES))
def test_successful_weak_connect_keeps_no_reference_to_the_receiver(kind):
    sig = Signal()
    fn = RECEIVER_FACTORIES[kind]()
    ref = weakref.WeakMethod(fn) if kind == "bound-method" else weakref.ref(fn)
    assert _connect_error(sig, fn) is None
    assert _connect_error(sig, fn, sender="s", dispatch_uid="u") is None
    sig.send(None)
    sig.send("s")
    del fn
    assert gone(ref)
    assert sig.receivers == []


def test_failed_weak_connect_of_unweakrefable_callable_keeps_no_reference():
    sig = Signal()

    class Unweakrefable:
        __slots__ = ("__dict__",)

        def __call__(self, **kwargs):
            return None

    handler = Unweakrefable()
    tracker = Model()
    handler.tracker = tracker  # observe the handler's lifetime through its attribute
    tracker_ref = weakref.ref(tracker)
    del tracker
    error = _connect_error(sig, handler)
    assert error is not None
    assert error[0] is TypeError
    assert "weak=False" in error[1]
    del handler
    assert gone(tracker_ref)


# -- bad input leaves the signal unchanged ---------------------------------------------


def _state(sig, other):
    senders = [None, "s", 5, SNAPSHOT_SENDER]
    return {
        "receivers": list(sig.receivers),
        "other": list(other.receivers),
        "has_listeners": [sig.has_listeners(s) for s in senders],
        "send": [sig.send(s) for s in senders],
        "send_robust": [sig.send_robust(s) for s in senders],
        "other_send": [other.send(s) for s in senders],
    }


SNAPSHOT_SENDER = Model()


def _ok(**kwargs):
    return "ok"


def _no_kwargs(sender):
    return None


BAD_OPERATIONS = {
    "connect-not-callable": (lambda sig, other: sig.connect(42), TypeError),
    "connect-not-callable-with-uid": (
        lambda sig, other: sig.connect("x", dispatch_uid="fresh-uid"),
        TypeError,
    ),
    "connect-no-kwargs": (lambda sig, other: sig.connect(_no_kwargs), ValueError),
    "connect-no-kwargs-with-uid": (
        lambda sig, other: sig.connect(_no_kwargs, sender="s", dispatch_uid="fresh-uid"),
        ValueError,
    ),
    "connect-unhashable-uid": (
        lambda sig, other: sig.connect(_ok, dispatch_uid={"a": 1}),
        TypeError,
    ),
    "connect-bad-priority": (lambda sig, other: sig.connect(_ok, priority="high"), TypeError),
    "connect-unweakrefable-weakly": (
        lambda sig, other: sig.connect(SlotHandler(), dispatch_uid="fresh-uid"),
        TypeError,
    ),
    "connect-nothing": (lambda sig, other: sig.connect(), TypeError),
    "connect-receiver-and-fn": (lambda sig, other: sig.connect(_ok, fn=named("x")), TypeError),
    "decorator-non-signal": (lambda sig, other: receiver([sig, other, "no"])(_ok), TypeError),
    "decorator-no-kwargs": (lambda sig, other: receiver([sig, other])(_no_kwargs), ValueError),
    "decorator-unweakrefable": (
        lambda sig, other: receiver([sig, other])(SlotHandler()),
        TypeError,
    ),
    "decorator-bad-uid": (
        lambda sig, other: receiver([sig, other], dispatch_uid=[1])(_ok),
        TypeError,
    ),
    "disconnect-nothing": (lambda sig, other: sig.disconnect(), TypeError),
    "disconnect-receiver-and-fn": (
        lambda sig, other: sig.disconnect(_ok, fn=named("x")),
        TypeError,
    ),
    "assign-receivers": (lambda sig, other: setattr(sig, "receivers", [_ok]), TypeError),
}


@pytest.mark.parametrize("operation", sorted(BAD_OPERATIONS))
def test_bad_input_leaves_the_signal_unchanged(operation):
    sig, other = Signal(name="sig"), Signal(name="other")
    a, b, c = named("a"), named("b"), named("c")
    sig.connect(a)
    sig.connect(b, sender="s", priority=2)
    sig.connect(c, sender=SNAPSHOT_SENDER, dispatch_uid="known", weak=False)
    other.connect(a)
    before = _state(sig, other)
    action, error = BAD_OPERATIONS[operation]
    with pytest.raises(error):
        action(sig, other)
    after = _state(sig, other)
    assert after == before


# -- send and send_robust: exceptions and logging --------------------------------------


class Boom(Exception):
    pass


def _boom(**kwargs):
    raise Boom("boom!")


def test_send_propagates_a_receiver_exception_and_stops():
    sig = Signal()
    log = []
    sig.connect(keep(named("before", log)))
    sig.connect(_boom)
    sig.connect(keep(named("after", log)))
    for _ in range(2):
        with pytest.raises(Boom, match="boom!"):
            sig.send(None)
    with pytest.raises(Boom):
        sig.send("str-sender")  # the slow path too
    assert log == ["before", "before", "before"]


def test_send_robust_turns_exceptions_into_responses():
    sig = Signal()
    log = []
    before, after = named("before", log), named("after", log)
    sig.connect(before)
    sig.connect(_boom)
    sig.connect(after)
    for sender in (None, None, "str-sender"):
        log.clear()
        responses = sig.send_robust(sender)
        assert receivers_of(responses) == [before, _boom, after]
        assert responses[0][1] == "before"
        assert responses[2][1] == "after"
        error = responses[1][1]
        assert isinstance(error, Boom)
        assert str(error) == "boom!"
        assert log == ["before", "after"]


def test_send_robust_returns_exception_with_traceback():
    sig = Signal()
    sig.connect(_boom)
    [(_, error)] = sig.send_robust(None)
    assert error.__traceback__ is not None
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_name == "_boom"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_send_robust_does_not_catch_base_exceptions(exc_type):
    sig = Signal()
    log = []

    def interrupt(**kwargs):
        raise exc_type()

    sig.connect(keep(named("before", log)))
    sig.connect(interrupt)
    sig.connect(keep(named("after", log)))
    with pytest.raises(exc_type):
        sig.send_robust(None)
    with pytest.raises(exc_type):
        sig.send_robust("slow-path")
    assert log == ["before", "before"]


def _tocsin_records(caplog):
    return [
        record
        for record in caplog.records
        if record.name == "tocsin" or record.name.startswith("tocsin.")
    ]


def test_send_robust_logs_error_with_exc_info(caplog):
    sig = Signal()
    sig.connect(_boom)
    with caplog.at_level(logging.ERROR, logger="tocsin"):
        [(_, error)] = sig.send_robust(None)
    [record] = _tocsin_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "Error calling _boom in Signal.send_robust() (boom!)"
    assert record.exc_info is not None
    assert record.exc_info[1] is error


def test_send_robust_logs_the_qualname():
    sig = Signal()

    class Service:
        def fail(self, **kwargs):
            raise Boom("method failed")

    service = Service()
    sig.connect(service.fail)
    logger = logging.getLogger("tocsin")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(logging.ERROR)
    logger.addHandler(handler)
    try:
        sig.send_robust(None)
    finally:
        logger.removeHandler(handler)
    [record] = records
    assert record.getMessage() == (
        f"Error calling {Service.fail.__qualname__} in Signal.send_robust() (method failed)"
    )
    assert "Service.fail" in record.getMessage()


class FailingHandler:
    def __call__(self, **kwargs):
        raise Boom("instance failed")


def _failing_partial():
    def base(tag, **kwargs):
        raise Boom(tag)

    return functools.partial(base, "partial failed")


@pytest.mark.parametrize(
    ("factory", "text"),
    [(FailingHandler, "instance failed"), (_failing_partial, "partial failed")],
    ids=["callable-instance", "partial"],
)
def test_send_robust_logs_callables_without_qualname(caplog, factory, text):
    sig = Signal()
    fn = factory()
    assert not isinstance(getattr(fn, "__qualname__", None), str)
    sig.connect(fn)
    with caplog.at_level(logging.ERROR, logger="tocsin"):
        [(_, error)] = sig.send_robust(None)
    assert isinstance(error, Boom)
    [record] = _tocsin_records(caplog)
    message = record.getMessage()
    assert message.startswith("Error calling ")
    assert message.endswith(f" in Signal.send_robust() ({text})")
    assert message == f"Error calling {fn!r} in Signal.send_robust() ({text})"
    assert record.exc_info[1] is error


def test_send_robust_logs_nothing_on_success(caplog):
    sig = Signal()
    sig.connect(keep(named("a")))
    with caplog.at_level(logging.DEBUG, logger="tocsin"):
        assert values(sig.send_robust(None)) == ["a"]
    assert _tocsin_records(caplog) == []


# -- changing connections during a send ------------------------------------------------


@pytest.mark.parametrize("sender", [None, "str", SNAPSHOT_SENDER], ids=["none", "str", "obj"])
@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_receiver_disconnects_itself_during_send(sender, method):
    sig = Signal()
    log = []

    def once(**kwargs):
        log.append("once")
        assert sig.disconnect(once) is True
        return "once"

    other = named("other", log)
    sig.connect(once)
    sig.connect(other)
    send = getattr(sig, method)
    assert values(send(sender)) == ["once", "other"]
    assert values(send(sender)) == ["other"]
    assert log == ["once", "other", "other"]


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_receiver_disconnects_others_during_send(method):
    # As in Django, a send calls the receivers that were live when it started; a
    # disconnect made by a receiver takes effect from the next send.
    sig = Signal()
    log = []
    armed = []
    later = named("later", log)
    earlier = named("earlier", log)

    def purge(**kwargs):
        log.append("purge")
        if armed:
            armed.clear()
            assert sig.disconnect(earlier) is True
            assert sig.disconnect(later) is True
        return "purge"

    sig.connect(earlier)
    sig.connect(purge)
    sig.connect(later)
    send = getattr(sig, method)
    assert values(send(None)) == ["earlier", "purge", "later"]  # now cached
    armed.append(True)
    assert values(send(None)) == ["earlier", "purge", "later"]
    assert values(send(None)) == ["purge"]
    assert sig.receivers == [purge]
    assert log == ["earlier", "purge", "later"] * 2 + ["purge"]


def test_receiver_connecting_during_send_takes_effect_next_send():
    sig = Signal()
    log = []
    added = named("added", log)

    def adder(**kwargs):
        log.append("adder")
        sig.connect(added)
        return "adder"

    sig.connect(adder)
    assert values(sig.send(None)) == ["adder"]
    assert values(sig.send(None)) == ["adder", "added"]
    assert log == ["adder", "adder", "added"]


def test_receiver_clearing_all_receivers_during_send():
    sig = Signal()
    log = []

    def clear(**kwargs):
        log.append("clear")
        sig.receivers = []

    sig.connect(clear)
    sig.connect(keep(named("next", log)))
    sig.send(None)
    assert sig.send(None) == []
    assert log == ["clear", "next"]


def test_receiver_may_send_the_signal_again():
    sig = Signal()
    depth = []

    def recurse(sender, **kwargs):
        depth.append(sender)
        if sender < 3:
            sig.send(sender + 1)
        return sender

    sig.connect(recurse)
    assert values(sig.send(0)) == [0]
    assert depth == [0, 1, 2, 3]


# -- send keeps no reference to its arguments ------------------------------------------


class Payload:
    pass


@pytest.mark.parametrize("kind", ["none", "str", "instance", "unweakrefable"])
@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_keeps_no_reference_to_arguments(kind, method):
    sig = Signal()
    specific_sender = {"none": None, "str": "s", "instance": Model(), "unweakrefable": object()}
    sender = specific_sender[kind]
    sig.connect(keep(named("any")))
    sig.connect(keep(named("mine")), sender=sender)
    send = getattr(sig, method)
    for _ in range(3):  # cold and cached
        payload = Payload()
        ref = weakref.ref(payload)
        responses = send(sender, payload=payload, also=[payload])
        assert len(responses) == 2
        del payload
        assert ref() is None  # no gc.collect(): nothing holds it, not even a cycle


def test_send_keeps_no_reference_to_the_sender():
    sig = Signal()
    sig.connect(keep(named("any")))
    for _ in range(3):
        sender = Model()
        ref = weakref.ref(sender)
        assert values(sig.send(sender)) == ["any"]
        assert sig.has_listeners(sender) is True
        del sender
        assert ref() is None


def test_send_keeps_no_reference_to_arguments_when_a_receiver_raises():
    sig = Signal()
    sig.connect(_boom)
    payload = Payload()
    ref = weakref.ref(payload)
    raised = False
    try:
        sig.send(None, payload=payload)
    except Boom:
        raised = True
    assert raised
    del payload
    collect()
    assert ref() is None


# -- connected_to and muted ------------------------------------------------------------


def test_connected_to_is_temporary():
    sig = Signal()
    log = []
    temporary = named("temporary", log)
    with sig.connected_to(temporary) as connected:
        assert connected is temporary
        assert values(sig.send(None)) == ["temporary"]
        assert sig.receivers == [temporary]
    assert sig.send(None) == []
    assert sig.receivers == []
    assert log == ["temporary"]


def test_connected_to_holds_strongly_and_respects_sender():
    sig = Signal()
    with sig.connected_to(lambda **kwargs: "inline", sender="s"):
        collect()
        assert values(sig.send("s")) == ["inline"]
        assert sig.send("other") == []
    assert sig.send("s") == []


def test_connected_to_does_not_disconnect_a_pre_existing_connection():
    sig = Signal()
    existing = named("existing")
    sig.connect(existing)
    with sig.connected_to(existing):
        assert values(sig.send(None)) == ["existing"]  # still one connection
    assert values(sig.send(None)) == ["existing"]
    assert sig.receivers == [existing]


def test_connected_to_disconnects_when_the_block_raises():
    sig = Signal()
    temporary = named("temporary")
    with pytest.raises(Boom), sig.connected_to(temporary):
        raise Boom("inside")
    assert sig.receivers == []


def test_connected_to_with_dispatch_uid_and_priority():
    sig = Signal()
    sig.connect(keep(named("plain")))
    with sig.connected_to(named("urgent"), dispatch_uid="u", priority=5):
        assert values(sig.send(None)) == ["urgent", "plain"]
    assert values(sig.send(None)) == ["plain"]
    assert sig.disconnect(dispatch_uid="u") is False


def test_muted_silences_every_send():
    sig = Signal()
    log = []
    sig.connect(keep(named("a", log)))
    sig.connect(keep(named("b", log)), sender="s")
    sig.send(None)  # warm the caches
    sig.send("s")
    log.clear()
    with sig.muted() as muted:
        assert muted is sig
        assert sig.send(None) == []
        assert sig.send("s") == []
        assert sig.send_robust(None) == []
        with sig.muted():
            assert sig.send(None) == []
        assert sig.send(None) == []  # still muted after the inner block
    assert log == []
    assert values(sig.send("s")) == ["a", "b"]
    assert log == ["a", "b"]


def test_muted_applies_to_other_threads():
    sig = Signal()
    log = []
    sig.connect(keep(named("a", log)))
    sig.send(None)
    results = []
    with sig.muted():
        thread = threading.Thread(target=lambda: results.append(sig.send(None)))
        thread.start()
        thread.join()
    assert results == [[]]
    assert log == ["a"]


def test_muted_restores_after_an_exception():
    sig = Signal()
    sig.connect(keep(named("a")))
    with pytest.raises(Boom), sig.muted():
        raise Boom("inside")
    assert values(sig.send(None)) == ["a"]


# -- activity watchers: what bridges use to forward only while someone listens ---------


def test_activity_watchers_hear_the_first_connect_and_the_last_disconnect():
    sig = Signal(name="watched")
    seen = []
    sig.watch_activity(lambda s: seen.append((s, s.is_active())))

    def first(sender, **kwargs):
        return 1

    def second(sender, **kwargs):
        return 2

    assert sig.is_active() is False
    sig.connect(first)
    sig.connect(second, sender="shop")
    assert seen == [(sig, True)]  # only the first connection makes it active
    sig.disconnect(first)
    assert seen == [(sig, True)]
    sig.disconnect(second, sender="shop")
    assert seen == [(sig, True), (sig, False)]

    with sig.connected_to(first):
        assert seen[-1] == (sig, True)
    assert seen[-1] == (sig, False)
    sig.connect(first)
    sig.receivers = []
    assert seen[-2:] == [(sig, True), (sig, False)]


def test_activity_watchers_hear_a_collected_receiver_at_the_next_change():
    sig = Signal(name="watched")
    seen = []
    sig.watch_activity(lambda s: seen.append(s.is_active()))

    def doomed(sender, **kwargs):
        return None

    sig.connect(doomed)
    del doomed
    gc.collect()
    assert seen == [True]
    assert sig.send(None) == []
    assert sig.disconnect(lambda sender, **kwargs: None) is False  # any later change
    assert seen == [True, False]
    assert sig.is_active() is False


def test_a_failing_activity_watcher_is_logged_and_changes_nothing(caplog):
    sig = Signal(name="watched")
    told = []

    def broken(signal):
        raise RuntimeError("watcher down")

    sig.watch_activity(broken)
    sig.watch_activity(lambda s: told.append(s.is_active()))

    def receiver_fn(sender, **kwargs):
        return "ok"

    with caplog.at_level(logging.ERROR, logger="tocsin"):
        sig.connect(receiver_fn)
    assert told == [True]
    assert sig.send(None) == [(receiver_fn, "ok")]
    assert "Error in activity watcher" in caplog.text
    sig.unwatch_activity(broken)
    sig.unwatch_activity(broken)  # twice: no error
    sig.disconnect(receiver_fn)
    assert told == [True, False]
