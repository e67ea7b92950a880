"""tocsin._registry: the connection table, through the interface the manager and
``tocsin.testing`` use, and the fast paths that connect spells out against their
reference versions."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from tocsin import Signal
from tocsin._refs import ANY_SENDER
from tocsin._registry import Connection, Registry


def on_paid(sender: Any, **kwargs: Any) -> str:
    return "paid"


def other(sender: Any, **kwargs: Any) -> str:
    return "other"


class Shop:
    pass


class Unhashable:
    __hash__ = None  # type: ignore[assignment]


SENDERS: list[Any] = [None, "shop", 7, -1, True, 2.5, Shop, Shop(), Unhashable(), (1, 2)]


@pytest.mark.parametrize("sender", SENDERS, ids=repr)
def test_connect_files_under_the_reference_sender_key(sender: Any) -> None:
    signal = Signal()
    connection = signal.registry.connect(on_paid, sender, True, None, 0)
    assert connection is not None
    assert connection.sender_key == Registry.sender_key(sender)
    assert connection.sender_key in signal.registry._by_sender


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_connect_files_buckets_as_the_reference_does(count: int) -> None:
    # connect() spells out _file_locked() for a sender's first connection and when a
    # bucket is already a dict; rebuilding the buckets with the reference must give
    # the same tables.
    signal = Signal()
    receivers = [_receiver(i) for i in range(count)]
    for receiver in receivers:
        signal.connect(receiver, sender=Shop)
        signal.connect(receiver)
    registry = signal.registry
    inline = dict(registry._by_sender)
    registry._by_sender.clear()
    with registry.lock:
        for connection in registry.connections.values():
            registry._file_locked(connection)
    assert registry._by_sender.keys() == inline.keys()
    for key, bucket in inline.items():
        assert _members(registry._by_sender[key]) == _members(bucket)


@pytest.mark.parametrize("sender", [None, "shop", 7, Shop], ids=repr)
def test_connect_invalidates_what_the_reference_invalidates(sender: Any) -> None:
    def caches_after(change: Any) -> tuple[set[Any], set[Any]]:
        signal = Signal()
        signal.connect(other)
        signal.connect(other, sender=Shop)
        for s in (None, "shop", 7, Shop):
            signal.send(s)
        change(signal)
        return set(signal.registry.send_cache), set(signal.registry.plans)

    def inline(signal: Signal) -> None:
        signal.connect(on_paid, sender=sender)

    def reference(signal: Signal) -> None:
        registry = signal.registry
        with registry.lock:
            registry._invalidate_locked(Registry.sender_key(sender))

    assert caches_after(inline) == caches_after(reference)


def test_the_send_reads_the_registrys_own_tables() -> None:
    # The caches are cleared in place, never replaced: the send holds them.
    signal = Signal()
    tables = signal._connections, signal._send_cache
    signal.connect(on_paid)
    signal.send(Shop)
    signal.connect(other)  # an any-sender change clears every sender's entry
    signal.receivers = []
    signal.registry.restore(signal.registry.snapshot())
    assert (signal._connections, signal._send_cache) == tables
    assert signal._connections is signal.registry.connections
    assert signal._send_cache is signal.registry.send_cache


def test_a_connection_is_a_handle() -> None:
    signal = Signal()
    connection = signal.registry.connect(on_paid, Shop, False, "paid", 3, owner="acme")
    assert isinstance(connection, Connection)
    assert connection.receiver is on_paid
    assert connection.sender is Shop
    assert (connection.weak, connection.priority, connection.dispatch_uid) == (False, 3, "paid")
    assert connection.owner == "acme"
    assert connection.alive()
    assert "on_paid" in repr(connection)
    assert signal.registry.connect(on_paid, Shop, True, "paid", 0) is None  # first one wins
    assert connection.drop() is True
    assert connection.drop() is False
    assert signal.send(Shop) == []


def test_drop_removes_that_connection_and_not_a_later_one() -> None:
    signal = Signal()
    first = signal.registry.connect(on_paid, None, True, None, 0)
    assert first is not None
    signal.disconnect(on_paid)
    second = signal.registry.connect(on_paid, None, True, None, 0)
    assert second is not None
    assert second is not first
    assert first.drop() is False
    assert signal.send(None) == [(on_paid, "paid")]


def test_find_returns_only_the_receivers_own_connection() -> None:
    signal = Signal()
    signal.connect(other, dispatch_uid="uid")
    assert signal.registry.find(on_paid, None, "uid") is None
    found = signal.registry.find(other, None, "uid")
    assert found is not None
    assert found.receiver is other


def test_sender_of_a_connection_by_value() -> None:
    signal = Signal()
    by_str = signal.registry.connect(on_paid, "shop", True, None, 0)
    by_int = signal.registry.connect(on_paid, 7, True, None, 0)
    anyone = signal.registry.connect(other, None, True, None, 0)
    assert by_str is not None
    assert by_int is not None
    assert anyone is not None
    assert (by_str.sender, by_int.sender, anyone.sender) == ("shop", 7, None)
    assert anyone.sender_key is ANY_SENDER


def test_a_collected_receivers_connection_is_purged() -> None:
    signal = Signal()

    def temporary(sender: Any, **kwargs: Any) -> None:
        return None

    connection = signal.registry.connect(temporary, None, True, None, 0)
    assert connection is not None
    del temporary
    gc.collect()
    assert not connection.alive()
    with signal.registry.lock:
        signal.registry.purge_dead_locked()
    assert signal.registry.connections == {}


def _receiver(index: int) -> Any:
    def receiver(sender: Any, **kwargs: Any) -> int:
        return index

    _keep.append(receiver)
    return receiver


_keep: list[Any] = []


def _members(bucket: Any) -> set[int]:
    return {id(c) for c in bucket.values()} if isinstance(bucket, dict) else {id(bucket)}


def test_reinstate_puts_a_dropped_connection_back_in_its_place() -> None:
    signal = Signal()
    first = signal.registry.connect(on_paid, None, True, "paid", 0)
    signal.connect(other)
    assert first is not None
    assert first.drop() is True
    assert [r for r, _ in signal.send(None)] == [other]
    assert first.reinstate() is True
    assert [r for r, _ in signal.send(None)] == [on_paid, other]  # its old place
    assert first.reinstate() is False  # already connected
    first.drop()
    signal.connect(other, dispatch_uid="paid")  # its place (the uid) is taken
    assert first.reinstate() is False


def test_swap_replaces_a_receiver_in_place_with_the_same_options() -> None:
    signal = Signal()

    def stand_in(sender: Any, **kwargs: Any) -> str:
        return "stand-in"

    placeholder = signal.registry.connect(stand_in, Shop, False, "uid", 3, owner="acme")
    signal.connect(other, sender=Shop, priority=3)
    assert placeholder is not None
    swapped = signal.registry.swap(placeholder, on_paid, weak=True)
    assert swapped is not None
    assert [r for r, _ in signal.send(Shop)] == [on_paid, other]
    assert (swapped.dispatch_uid, swapped.priority, swapped.owner) == ("uid", 3, "acme")
    assert (swapped.sender, swapped.weak) == (Shop, True)
    assert signal.registry.swap(placeholder, other, weak=True) is None  # gone already
