"""Every line marked `# E: <code>` must be reported by mypy --strict with that code,
and nothing else may be reported."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tocsin import Signal, receiver


class Shop: ...


class Order: ...


@Signal.typed
def order_paid(sender: type[Shop], *, order: Order, amount: Decimal) -> None:
    """Sent when an order has been paid."""


order_paid.send(Shop, order=Order(), amont=Decimal(1))  # E: call-arg
order_paid.send(Shop, order=Order())  # E: call-arg
order_paid.send(Shop, order="A-17", amount=Decimal(1))  # E: arg-type
order_paid.send(Shop, order=Order(), amount=9.90)  # E: arg-type
order_paid.send(object, order=Order(), amount=Decimal(1))  # E: arg-type
order_paid.send_robust(Shop, Order(), Decimal(1))  # E: call-arg


def wrong_type(sender: type[Shop], order: str, **kwargs: Any) -> None: ...


def unknown_parameter(sender: type[Shop], colour: str, **kwargs: Any) -> None: ...


order_paid.connect(wrong_type)  # E: arg-type
order_paid.connect(unknown_parameter)  # E: arg-type


@receiver(order_paid)  # E: arg-type
def decorated_wrong(sender: type[Shop], *, amount: int, **kwargs: Any) -> None: ...


async def later() -> None:
    await order_paid.asend(Shop, order=Order())  # E: call-arg
