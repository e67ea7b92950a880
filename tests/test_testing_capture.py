"""tocsin.testing: capture(), isolated_signals(), install_plugin_distribution()."""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.metadata
import re
import sys
import threading
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from tocsin import Signal
from tocsin.signals import setting_changed, user_login_failed
from tocsin.testing import (
    CAPTURE_PRIORITY,
    Captured,
    capture,
    install_plugin_distribution,
    isolated_signals,
    live_signals,
    sent,
)


class Shop:
    pass


class Bank:
    pass


def answer(sender: Any, **kwargs: Any) -> str:
    return "answer"


@pytest.fixture
def paid() -> Signal:
    return Signal(providing_args=["order", "amount"], name="shop.order_paid")


def failure(captured: Captured, method: str, *args: Any, **named: Any) -> str:
    with pytest.raises(AssertionError) as caught:
        getattr(captured, method)(*args, **named)
    return str(caught.value)


# -- recording ----------------------------------------------------------------------------


def test_records_sender_arguments_method_and_order(paid: Signal) -> None:
    async def both() -> None:
        await paid.asend(Shop, order=3, amount=3.0)
        await paid.asend_robust(Shop, order=4, amount=4.0)

    with capture(paid) as captured:
        paid.send(Shop, order=1, amount=1.0)
        paid.send_robust(Bank, order=2, amount=2.0)
        asyncio.run(both())
    assert [(s.sender, s.kwargs, s.method, s.index) for s in captured] == [
        (Shop, {"order": 1, "amount": 1.0}, "send", 0),
        (Bank, {"order": 2, "amount": 2.0}, "send_robust", 1),
        (Shop, {"order": 3, "amount": 3.0}, "asend", 2),
        (Shop, {"order": 4, "amount": 4.0}, "asend_robust", 3),
    ]
    assert len(captured) == 4
    assert captured[0].signal is paid
    assert [s.index for s in captured[1:3]] == [1, 2]
    assert captured.senders == [Shop, Bank, Shop, Shop]
    assert captured.arguments[1] == {"order": 2, "amount": 2.0}
    sequences = [s.sequence for s in captured]
    assert sequences == sorted(sequences)
    assert repr(captured[0]) == f"<Sent #0 send(sender={Shop!r}, order=1, amount=1.0)>"


def test_recorder_runs_first_and_is_gone_afterwards(paid: Signal) -> None:
    order: list[str] = []

    def urgent(sender: Any, **kwargs: Any) -> None:
        order.append(f"urgent saw {len(captured)}")
        raise RuntimeError("boom")

    paid.connect(urgent, priority=1000)
    with capture(paid) as captured:
        with pytest.raises(RuntimeError):
            paid.send(Shop, order=1, amount=1.0)
        responses = paid.send_robust(Shop, order=2, amount=2.0)
    assert order == ["urgent saw 1", "urgent saw 2"]  # recorded before urgent ran
    assert responses[0] == (captured._record, None)
    assert paid.receivers == [urgent]
    paid.send_robust(Shop, order=3, amount=3.0)
    assert len(captured) == 2  # still readable, no longer recording


def test_sender_filter_matches_like_connect(paid: Signal) -> None:
    with capture(paid, sender="bank") as by_value, capture(paid, sender=Shop) as by_identity:
        paid.send("bank", order=1)
        paid.send("".join(["ba", "nk"]), order=2)  # an equal str: matched by value
        paid.send(Shop, order=3)
        paid.send(Bank, order=4)
    assert [s.kwargs["order"] for s in by_value] == [1, 2]
    assert [s.kwargs["order"] for s in by_identity] == [3]
    assert "captured for sender 'bank'" in failure(by_value, "assert_sent", order=9)


def test_sends_reaching_no_receiver_are_not_recorded(paid: Signal) -> None:
    with capture(paid) as captured:
        with paid.muted():
            paid.send(Shop, order=1)
        paid.send(Shop, order=2)
    assert [s.kwargs["order"] for s in captured] == [2]


def test_receivers_view_is_recorded_credentials_masked() -> None:
    with capture(user_login_failed) as failed:
        user_login_failed.send("auth", credentials={"username": "ada", "password": "x"})
    failed.assert_sent_once(
        sender="auth", credentials={"username": "ada", "password": "********************"}
    )


def test_code_that_sends_only_to_listeners_is_captured(paid: Signal) -> None:
    def relay(order: int) -> None:  # the bridges' idiom
        if paid.has_listeners(Shop):
            paid.send(Shop, order=order)

    with capture(paid) as captured:
        relay(1)
    captured.assert_sent_once(sender=Shop, order=1)


def test_records_from_many_threads(paid: Signal) -> None:
    with capture(paid) as captured:
        threads = [
            threading.Thread(target=lambda n=n: [paid.send(Shop, n=n) for _ in range(50)])
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(captured) == 400
    assert sorted(s.index for s in captured) == list(range(400))


def test_clear_and_capture_takes_only_signals(paid: Signal) -> None:
    with capture(paid) as captured:
        paid.send(Shop)
        captured.clear()
        paid.send(Bank)
    assert captured.senders == [Bank]
    with (
        pytest.raises(TypeError, match=r"capture\(\) takes a tocsin Signal"),
        capture("shop.order_paid"),  # type: ignore[arg-type]
    ):
        pass
    assert CAPTURE_PRIORITY > 10**9


def test_method_of_a_recorder_called_by_hand(paid: Signal) -> None:
    with capture(paid) as captured:
        for receiver in paid.receivers:
            receiver(signal=paid, sender=Shop)
    # Sends take the Python path while capturing, so the C send too is told apart.
    assert captured[0].method is None
    assert "<unknown method>(sender=" in captured[0].describe()


# -- assertions ---------------------------------------------------------------------------


def test_assert_sent_passes_and_returns_the_send(paid: Signal) -> None:
    with capture(paid) as captured:
        paid.send(Shop, order=1, amount=10.0)
        paid.send(Shop, order=2, amount=12.5)
    assert captured.assert_sent(amount=12.5).kwargs["order"] == 2
    assert captured.assert_sent(sender=Shop).index == 0
    assert captured.assert_sent(order=ANY, amount=10.0).index == 0
    assert captured.assert_sent().index == 0


def test_assert_sent_failure_shows_every_send_argument_by_argument(paid: Signal) -> None:
    with capture(paid) as captured:
        paid.send(Shop, order=1, amount=10.0)
        paid.send_robust(Bank, order=1, amount=12.5)
    message = failure(captured, "assert_sent", sender=Shop, amount=12.5, coupon="X")
    assert message == (
        f"Expected {paid!r} to have been sent with sender={Shop!r}, amount=12.5, coupon='X'.\n"
        f"Recorded sends (2), and how each differs:\n"
        f"  #0 send(sender={Shop!r}, order=1, amount=10.0)\n"
        f"      amount: expected 12.5, got 10.0\n"
        f"      coupon: expected 'X', but it was not sent\n"
        f"  #1 send_robust(sender={Bank!r}, order=1, amount=12.5)\n"
        f"      sender: expected {Shop!r}, got {Bank!r}\n"
        f"      coupon: expected 'X', but it was not sent"
    )


def test_failure_when_never_sent(paid: Signal) -> None:
    with capture(paid) as captured:
        pass
    message = failure(captured, "assert_sent", order=1)
    assert message.endswith("It was not sent at all while captured.")
    assert "order_paid" in message


def test_long_values_get_a_line_diff(paid: Signal) -> None:
    record = {"id": 7, "lines": list(range(60)), "customer": "ada"}
    with capture(paid) as captured:
        paid.send(Shop, order=record)
    message = failure(
        captured, "assert_sent", order={"id": 7, "lines": list(range(60)), "customer": "bob"}
    )
    assert "order: differs (- expected, + got):" in message
    assert re.search(r"^\s+- .*'customer': 'bob'", message, re.MULTILINE)
    assert re.search(r"^\s+\+ .*'customer': 'ada'", message, re.MULTILINE)
    assert "  ..." in message  # unchanged lines far from the change are left out


def test_equal_reprs_that_are_not_equal_say_so(paid: Signal) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    with capture(paid) as captured:
        paid.send(Shop, order=Opaque())
    message = failure(captured, "assert_sent", order=Opaque())
    assert "order: expected <opaque> (" in message
    assert "got an unequal <opaque>" in message


def test_assert_sent_once(paid: Signal) -> None:
    with capture(paid) as captured:
        paid.send(Shop, order=1)
    assert captured.assert_sent_once(sender=Shop, order=1).index == 0
    with capture(paid) as twice:
        paid.send(Shop, order=1)
        paid.send(Shop, order=2)
    message = failure(twice, "assert_sent_once", order=1)
    assert "to have been sent exactly once with order=1, but it was sent 2 times (1 matching)" in (
        message
    )
    assert "#0 send(" in message
    assert "      (matches)" in message
    assert "order: expected 1, got 2" in message
    assert "exactly once." in failure(Captured(paid), "assert_sent_once")


def test_assert_not_sent(paid: Signal) -> None:
    with capture(paid) as captured:
        paid.send(Shop, order=1)
    captured.assert_not_sent(sender=Bank)
    captured.assert_not_sent(order=2)
    message = failure(captured, "assert_not_sent")
    assert message == (
        f"Expected {paid!r} not to have been sent, but 1 of the 1 recorded sends did:\n"
        f"  #0 send(sender={Shop!r}, order=1)"
    )
    assert "not to have been sent with sender=" in failure(captured, "assert_not_sent", sender=Shop)
    Captured(paid).assert_not_sent()


def test_assert_sent_in_order(paid: Signal) -> None:
    with capture(paid) as captured:
        for order in (1, 2, 3, 4):
            paid.send(Shop if order % 2 else Bank, order=order)
    captured.assert_sent_in_order([sent(Shop, order=1), {"order": 3}, sent(sender=Bank)])
    captured.assert_sent_in_order([])
    message = failure(captured, "assert_sent_in_order", [{"order": 3}, sent(order=2)])
    assert message.startswith(f"Expected {paid!r} to have been sent in this order:\n")
    assert "     [0] order=3\n  -> [1] order=2\n" in message
    assert "but no send matches [1] after #2, the send that matched [0]." in message
    assert "at all." in failure(captured, "assert_sent_in_order", [{"order": 9}])
    with pytest.raises(TypeError, match=r"sent\(\.\.\.\) items or dicts"):
        captured.assert_sent_in_order([3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="sender twice"):
        sent(Shop, sender=Bank)


def test_broken_repr_does_not_hide_the_failure(paid: Signal) -> None:
    class Broken:
        def __repr__(self) -> str:
            raise ValueError("no repr")

    with capture(paid) as captured:
        paid.send(Broken(), order=1)
    assert "repr() raised ValueError('no repr')" in failure(captured, "assert_sent", order=2)


# -- isolated_signals ---------------------------------------------------------------------


def test_isolated_signals_removes_added_and_restores_removed(paid: Signal) -> None:
    def first(sender: Any, **kwargs: Any) -> str:
        return "first"

    def second(sender: Any, **kwargs: Any) -> str:
        return "second"

    def third(sender: Any, **kwargs: Any) -> str:
        return "third"

    def added(sender: Any, **kwargs: Any) -> str:
        return "added"

    paid.connect(first, sender=Shop, dispatch_uid="first-uid", priority=5)
    paid.connect(second, sender="bank")
    paid.connect(third)
    with isolated_signals() as watched:
        assert any(signal is paid for signal in watched)
        paid.disconnect(dispatch_uid="first-uid", sender=Shop)
        paid.disconnect(third)
        paid.connect(added, dispatch_uid="added-uid", weak=False)
        paid.connect(second, sender=Bank)
        assert paid.receivers == [second, added, second]
    assert paid.receivers == [first, second, third]
    assert [r for _, r in paid.send(Shop)] == ["first", "third"]
    assert [r for _, r in paid.send("bank")] == ["second", "third"]
    assert [r for _, r in paid.send(Bank)] == ["third"]
    assert paid.disconnect(dispatch_uid="added-uid") is False  # made inside: gone again
    assert paid.disconnect(dispatch_uid="first-uid", sender=Shop) is True


def test_isolated_signals_after_receivers_cleared(paid: Signal) -> None:
    paid.connect(answer)
    with isolated_signals(paid):
        paid.receivers = []
    assert paid.receivers == [answer]
    assert paid.send(Shop) == [(answer, "answer")]


def test_isolated_signals_of_named_signals_only(paid: Signal) -> None:
    other = Signal(name="other")
    with isolated_signals(paid) as watched:
        paid.connect(answer)
        other.connect(answer)
    assert watched == [paid]
    assert paid.receivers == []
    assert other.receivers == [answer]
    with (
        pytest.raises(TypeError, match="takes tocsin Signals"),
        isolated_signals("other"),  # type: ignore[arg-type]
    ):
        pass


def test_isolated_signals_keeps_a_collected_receiver_gone(paid: Signal) -> None:
    def doomed(sender: Any, **kwargs: Any) -> None:
        pass

    paid.connect(doomed)
    with isolated_signals(paid):
        paid.disconnect(doomed)
        del doomed
        gc.collect()
    assert paid.receivers == []


def test_live_signals_finds_module_and_local_signals(paid: Signal) -> None:
    found = live_signals()
    assert any(signal is paid for signal in found)
    assert any(signal is setting_changed for signal in found)


# -- install_plugin_distribution ----------------------------------------------------------


def test_install_plugin_distribution_builds_a_real_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = install_plugin_distribution(
        tmp_path,
        """
        import helper_for_plugin
        from tocsin import Signal

        pinged = Signal(name="throwaway.pinged")
        plugin = helper_for_plugin.VALUE
        """,
        name="acme-audit",
        group="tocsintest.throwaway",
        version="2.5.0",
        attribute="plugin",
        modules={"helper_for_plugin": "VALUE = object()\n"},
    )
    assert dist.name == "acme-audit"
    assert dist.version == "2.5.0"
    assert dist.entry_point == f"{dist.module}:plugin"
    assert dist.modules == tuple(sorted([dist.module, "helper_for_plugin"]))
    found = list(importlib.metadata.distributions(path=[str(dist.path)]))
    assert [d.metadata["Name"] for d in found] == [dist.distribution]
    points = found[0].entry_points.select(group="tocsintest.throwaway")
    assert [(p.name, p.value) for p in points] == [("acme-audit", dist.entry_point)]
    monkeypatch.syspath_prepend(str(dist.path))
    try:
        module = importlib.import_module(dist.module)
        assert module.plugin is sys.modules["helper_for_plugin"].VALUE
    finally:
        for name in dist.modules:
            sys.modules.pop(name, None)


def test_install_plugin_distribution_names_are_unique(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be a Python identifier"):
        install_plugin_distribution(tmp_path / "a", "", module="not-a-module")
    with pytest.raises(ValueError, match="repeats the plugin module"):
        install_plugin_distribution(tmp_path / "b", "", module="same", modules={"same": ""})


def test_install_plugin_distribution_reports_a_failing_build(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as caught:
        install_plugin_distribution(tmp_path, "", version="not a version!")
    message = str(caught.value)
    assert "pip could not build and install the throwaway plugin distribution" in message
    assert "setuptools>=70.1" in message
