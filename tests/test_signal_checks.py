"""Mistakes caught where they are made (issue 16): a receiver that needs an argument
its signal never sends is refused at connect, and a strict signal refuses a send with
an argument it does not declare."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from tocsin import Signal, receiver

logged_out = Signal(providing_args=["request", "user"], name="auth.user_logged_out")


def on_logout(sender: Any, user: Any, session_id: Any, **kwargs: Any) -> None:
    return None


def test_connect_refuses_a_receiver_needing_an_argument_never_sent() -> None:
    with pytest.raises(TypeError) as caught:
        logged_out.connect(on_logout)
    message = str(caught.value)
    assert "on_logout requires 'session_id'" in message
    assert "'auth.user_logged_out'" in message
    assert "it sends signal, sender and request, user" in message
    assert "Give it a default, or read it from **kwargs" in message
    assert logged_out.receivers == []


def test_receiver_decorator_refuses_it_too_and_connects_nothing() -> None:
    other = Signal(providing_args=["user"], name="other")
    with pytest.raises(TypeError, match="requires 'session_id'"):
        receiver([other, logged_out])(on_logout)
    assert other.receivers == []
    assert logged_out.receivers == []


@pytest.mark.parametrize(
    "fits",
    [
        lambda sender, user, **kwargs: None,  # only what is sent
        lambda sender, user, session_id=None, **kwargs: None,  # optional extra
        lambda signal, sender, request, user, **kwargs: None,  # signal and sender too
        lambda *args, **kwargs: None,  # anything
        lambda sender, *, user, **kwargs: None,  # keyword-only, sent
    ],
)
def test_receivers_that_fit_connect(fits: Any) -> None:
    signal = Signal(providing_args=["request", "user"])
    signal.connect(fits)
    assert len(signal.receivers) == 1


def test_a_signal_without_providing_args_takes_any_receiver_with_kwargs() -> None:
    signal = Signal()
    signal.connect(on_logout)
    with pytest.raises(TypeError, match="session_id"):  # at send, as in Django
        signal.send(None, user="ann")


def test_methods_and_callable_objects_are_checked_as_called() -> None:
    class Handler:
        def on_event(self, sender: Any, colour: Any, **kwargs: Any) -> None:
            return None

        def __call__(self, sender: Any, colour: Any, **kwargs: Any) -> None:
            return None

    signal = Signal(providing_args=["user"], name="checked")
    handler = Handler()
    with pytest.raises(TypeError, match=r"requires 'colour'"):
        signal.connect(handler.on_event)
    with pytest.raises(TypeError, match=r"requires 'colour'"):
        signal.connect(handler, weak=False)


def test_a_method_marked_in_a_class_body_is_checked_without_self() -> None:
    signal = Signal(providing_args=["user"], name="marked")

    class Fine:
        @receiver(signal)
        def on_user(self, sender: Any, user: Any, **kwargs: Any) -> None:
            return None

    with pytest.raises(TypeError, match="requires 'colour'"):

        class Wrong:
            @receiver(signal)
            def on_user(self, sender: Any, colour: Any, **kwargs: Any) -> None:
                return None

    assert Fine


# -- strict sends -------------------------------------------------------------------------


def echo(sender: Any, **kwargs: Any) -> dict[str, Any]:
    return kwargs


@pytest.mark.parametrize("receivers", [0, 1])
@pytest.mark.parametrize("shape", ["positional", "keyword"])
def test_a_strict_signal_refuses_an_undeclared_argument(receivers: int, shape: str) -> None:
    paid = Signal(providing_args=["order", "amount"], name="shop.paid", strict=True)
    assert paid.strict
    if receivers:
        paid.connect(echo)

    def send_with_a_typo() -> Any:
        if shape == "positional":
            return paid.send(None, order=1, amont=2)
        return paid.send(sender=None, order=1, amont=2)

    for _ in range(2):  # not only the first send
        with pytest.raises(TypeError) as caught:
            send_with_a_typo()
        assert str(caught.value) == (
            "<Signal 'shop.paid' providing_args=['order', 'amount']>.send() got 'amont', "
            "which the signal does not declare (its providing_args: order, amount). Fix "
            "the name, or add it to providing_args."
        )
    expected = [(echo, {"signal": paid, "order": 1, "amount": 2})] if receivers else []
    assert paid.send(None, order=1, amount=2) == expected
    assert paid.send_robust(sender=None, order=1, amount=2) == expected
    with pytest.raises(TypeError, match=r"send_robust\(\) got 'amont'"):
        paid.send_robust(None, amont=2)
    with pytest.raises(TypeError, match=r"asend\(\) got 'amont'"):
        asyncio.run(paid.asend(None, amont=2))


def test_strict_needs_providing_args() -> None:
    with pytest.raises(TypeError, match="give the signal its providing_args"):
        Signal(strict=True, name="vague")


def test_signals_are_not_strict_unless_asked() -> None:
    paid = Signal(providing_args=["order"])
    assert not paid.strict
    assert paid.send(None, anything=1) == []


def test_tocsin_debug_makes_signals_with_providing_args_strict() -> None:
    code = (
        "from tocsin import Signal\n"
        "paid = Signal(providing_args=['order'], name='paid')\n"
        "loose = Signal(name='loose')\n"
        "print(paid.strict, loose.strict, Signal(providing_args=['x'], strict=False).strict)\n"
        "try:\n"
        "    paid.send(None, ordr=1)\n"
        "except TypeError as error:\n"
        "    print('refused', 'ordr' in str(error))\n"
    )
    for value, expected in (
        ("1", "True False False\nrefused True\n"),
        ("0", "False False False\n"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={"TOCSIN_DEBUG": value, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout == expected
