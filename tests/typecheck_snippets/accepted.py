"""Must type-check cleanly under mypy --strict: typed and untyped signals, used well."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tocsin import Signal, TypedSignal, receiver


class Shop: ...


class Order: ...


@Signal.typed
def order_paid(sender: type[Shop], *, order: Order, amount: Decimal) -> None:
    """Sent when an order has been paid."""


loosely: TypedSignal[...] = order_paid  # a typed signal can be held as "any arguments"

order_paid.send(Shop, order=Order(), amount=Decimal("9.90"))
order_paid.send_robust(sender=Shop, order=Order(), amount=Decimal(1))


async def main() -> None:
    await order_paid.asend(Shop, order=Order(), amount=Decimal(1))
    await order_paid.asend_robust(Shop, order=Order(), amount=Decimal(1))


asyncio.run(main())


def everything(sender: type[Shop], order: Order, amount: Decimal, **kwargs: Any) -> str:
    return "ok"


def only_what_it_needs(sender: type[Shop], *, order: Order, **kwargs: Any) -> None: ...


def anything(sender: object, **kwargs: Any) -> None: ...


order_paid.connect(everything)
order_paid.connect(only_what_it_needs, sender=Shop, dispatch_uid="x", priority=3)
order_paid.connect(anything)


@receiver(order_paid, sender=Shop)
def decorated(sender: type[Shop], *, order: Order, amount: Decimal, **kwargs: Any) -> int:
    return 1


# Untyped signals keep working exactly as before: anything goes.
legacy = Signal(providing_args=["whatever"])
legacy.send(object(), whatever=1, anything_else="fine")
legacy.connect(anything)


@receiver([legacy, order_paid])
def on_both(sender: Any, **kwargs: Any) -> None: ...


@receiver(legacy)
def untyped_receiver(sender: Any, colour: str, **kwargs: Any) -> None: ...
