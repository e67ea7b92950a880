"""A small shop that announces what happens in it, and the receivers that listen."""

from __future__ import annotations

from tocsin import Signal, receiver

order_paid = Signal(providing_args=["order", "amount"], name="shop.order_paid")


class BookShop:
    pass


class CoffeeShop:
    pass


@receiver(order_paid)
def ledger(sender: type, order: str, amount: float, **kwargs: object) -> str:
    return f"ledger: {sender.__name__} booked {order} for {amount:.2f}"


@receiver(order_paid, sender=BookShop, dispatch_uid="mail-receipt")
def mail_receipt(sender: type, order: str, **kwargs: object) -> str:
    return f"mail: receipt for {order} sent"


@receiver(order_paid, sender=BookShop, dispatch_uid="mail-receipt")
def mail_receipt_again(sender: type, order: str, **kwargs: object) -> str:
    return "never called: dispatch_uid 'mail-receipt' is taken by mail_receipt"


def main() -> None:
    for shop, order, amount in [(BookShop, "book-17", 12.5), (CoffeeShop, "latte-3", 3.2)]:
        print(f"{shop.__name__} sends order_paid({order!r}, {amount}):")
        for handler, response in order_paid.send(shop, order=order, amount=amount):
            print(f"  {handler.__name__:<12} -> {response}")
    print(f"\n{order_paid!r} has {len(order_paid.receivers)} receivers.")


if __name__ == "__main__":
    main()
