"""What `make demo` shows: signals with sender filters and dispatch_uid, then plugins.

The Makefile pip-installs the example plugins from plugins/ into the demo's venv, so
the second half is the real thing: entry points found in installed distributions,
their receivers connected, one plugin switched off at runtime.
"""

from __future__ import annotations

import os
import sys
import tempfile
import wsgiref.util
from collections.abc import Callable, Iterable
from typing import Any

import tocsin
from tocsin import Signal, receiver
from tocsin._send import COMPILED
from tocsin.cli import main as tocsin_command
from tocsin.contrib.wsgi import SignalsMiddleware
from tocsin.signals import post_save, user_logged_in, user_logged_out

# -- part 1: a signal of your own --------------------------------------------------------

order_paid = Signal(providing_args=["order", "amount"], name="shop.order_paid")


class BookShop:
    pass


class CoffeeShop:
    pass


@receiver(order_paid)
def ledger(sender: type, order: str, amount: float, **kwargs: object) -> str:
    return f"booked {order} for {amount:.2f}"


@receiver(order_paid, sender=BookShop, dispatch_uid="mail-receipt")
def mail_receipt(sender: type, order: str, **kwargs: object) -> str:
    return f"receipt for {order} mailed"


@receiver(order_paid, sender=BookShop, dispatch_uid="mail-receipt")
def mail_receipt_again(sender: type, order: str, **kwargs: object) -> str:
    return "never called: dispatch_uid 'mail-receipt' is taken by mail_receipt"


def part_one() -> None:
    print("== 1. Signals: a sender filter and a dispatch_uid ==")
    print("(sends run in", "C, tocsin._speedups)" if COMPILED else "pure Python: no C compiler?)")
    for shop, order, amount in [(BookShop, "book-17", 12.5), (CoffeeShop, "latte-3", 3.2)]:
        print(f"{shop.__name__}: order_paid.send(order={order!r}, amount={amount})")
        for handler, response in order_paid.send(shop, order=order, amount=amount):
            print(f"    {handler.__name__:<13} -> {response}")
    print()


# -- part 2: receivers from installed plugins --------------------------------------------


class User:
    def __init__(self, username: str) -> None:
        self.username = username


class Article:
    def __init__(self, pk: int, title: str) -> None:
        self.pk, self.title = pk, title


def hello_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello\n"]


def traffic(web: SignalsMiddleware, who: str) -> None:
    """A little of everything the plugins listen to: a login, a request, two saves."""
    user = User(who)
    user_logged_in.send(User, request=None, user=user)
    environ: dict[str, Any] = {"PATH_INFO": f"/articles/{who}"}
    wsgiref.util.setup_testing_defaults(environ)
    body = web(environ, lambda status, headers, exc_info=None: lambda data: None)
    b"".join(body)
    body.close()  # type: ignore[attr-defined]  # as every WSGI server does
    article = Article(7, f"{who}'s notes")
    post_save.send(Article, instance=article, created=True, raw=False, using="default")
    post_save.send(Article, instance=article, created=False, raw=False, using="default")
    user_logged_out.send(User, request=None, user=user)


def show_effects(seen_before: int) -> int:
    import tocsin_audit_sqlite.receivers as audit
    import tocsin_legacy_greeter as greeter
    import tocsin_signal_counter as counter

    rows = audit.trail()
    print("    audit-sqlite   trail:", ", ".join(f"{e} {s}" for e, s, _ in rows[seen_before:]))
    print("    legacy-greeter greeted:", ", ".join(greeter.greeted) or "-")
    if "tocsin_welcome_mail.mail" in sys.modules:
        mail = sys.modules["tocsin_welcome_mail.mail"]
        print("    welcome-mail   outbox:", ", ".join(f"{to}: {s}" for to, s in mail.outbox))
    counts = counter.plugin.counts
    total = sum(counts.values())
    print(f"    signal-counter counted {total} signals:", dict(sorted(counts.items())) or "-")
    return len(rows)


def part_two() -> None:
    print("== 2. Plugins: found in installed distributions, switched at runtime ==")
    enabled = tocsin.plugins.load()
    print(f"tocsin.plugins.load() enabled: {', '.join(enabled)}")
    imported = "tocsin_welcome_mail.mail" in sys.modules
    print(f"welcome-mail declares its receivers in metadata: imported at load()? {imported}")
    web = SignalsMiddleware(hello_app)

    print("\nTraffic for 'ann', every plugin enabled:")
    traffic(web, "ann")
    imported = "tocsin_welcome_mail.mail" in sys.modules
    print(f"    (welcome-mail imported by the first login it received? {imported})")
    seen = show_effects(0)

    tocsin.plugins.disable("signal-counter")
    print("\ntocsin.plugins.disable('signal-counter'); traffic for 'bob':")
    traffic(web, "bob")
    seen = show_effects(seen)
    print(f"    (is_enabled('signal-counter') -> {tocsin.plugins.is_enabled('signal-counter')})")

    print("\n$ tocsin plugins")
    tocsin_command(["plugins"], manager=tocsin.plugins)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.setdefault("TOCSIN_AUDIT_DB", os.path.join(scratch, "audit.sqlite3"))
        part_one()
        part_two()


if __name__ == "__main__":
    main()
