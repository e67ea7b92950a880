"""Mirror a project's own ``django.dispatch.Signal`` to a tocsin :class:`~tocsin.Signal`.

For moving receivers into plugins one at a time: the project keeps sending its Django
signal, the receivers still connected to it keep working, and every send is relayed
to a tocsin signal that plugin receivers connect to::

    # shop/signals.py
    from django.dispatch import Signal
    from tocsin.contrib.django import mirror

    order_paid = Signal()
    order_paid_tocsin = mirror(order_paid, name="shop.order_paid")

    # in a plugin distribution
    @tocsin.receiver(shop.signals.order_paid_tocsin)
    def mail_receipt(sender, order, **kwargs): ...

Once no receiver is left on the Django side, replace the Django signal by the tocsin
one (same name, same ``send`` calls) and drop the mirror.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

from django.dispatch import Signal as DjangoSignal

from tocsin import Signal
from tocsin.contrib.django.relay import make_relay

__all__ = ["mirror", "mirror_uid", "unmirror"]

# The tocsin signal mirror() created for a Django signal, so that mirroring it again
# returns the same one.  Weak keys: a mirror does not keep a Django signal alive.
_created: weakref.WeakKeyDictionary[DjangoSignal, Signal] = weakref.WeakKeyDictionary()


def mirror_uid(tocsin_signal: Signal) -> str:
    """The ``dispatch_uid`` of the relay from a Django signal to *tocsin_signal*.

    The relay holds *tocsin_signal* strongly, so its ``id()`` stays unique for as long
    as the relay is connected.
    """
    return f"tocsin.contrib.django.mirror:{id(tocsin_signal):#x}"


def mirror(
    django_signal: DjangoSignal,
    tocsin_signal: Signal | None = None,
    *,
    name: str | None = None,
    providing_args: Iterable[str] | None = None,
    robust: bool = False,
) -> Signal:
    """Relay every send of *django_signal* to a tocsin signal, and return that signal.

    Without *tocsin_signal*, a new :class:`~tocsin.Signal` is made (with *name* and
    *providing_args*); mirroring the same Django signal again returns that same one.
    The relay is a Django receiver for any sender, connected strongly and with a
    ``dispatch_uid``, so mirroring twice never sends twice.  It sends with the same
    sender and arguments (all but ``signal``), only when the tocsin signal
    ``has_listeners(sender)``.

    A tocsin receiver's exception propagates into Django's ``send`` (and becomes the
    relay's response in Django's ``send_robust``), and later tocsin receivers are not
    called; with ``robust=True`` every tocsin receiver is called first, and the first
    failure is raised afterwards.

    Django's ``asend`` calls the relay as it calls any synchronous receiver (in a
    worker thread), and the relay sends synchronously: async tocsin receivers then run
    to completion in that thread.
    """
    if not isinstance(django_signal, DjangoSignal):
        raise TypeError(
            f"mirror() takes a django.dispatch.Signal, not {type(django_signal).__name__}."
        )
    if tocsin_signal is None:
        tocsin_signal = _created.get(django_signal)
        if tocsin_signal is None:
            tocsin_signal = Signal(providing_args=providing_args, name=name)
            _created[django_signal] = tocsin_signal
    elif name is not None or providing_args is not None:
        raise TypeError(
            "mirror(): name and providing_args describe the tocsin signal mirror() "
            "creates; they cannot be given with an existing tocsin_signal."
        )
    elif not isinstance(tocsin_signal, Signal):
        raise TypeError(f"mirror() mirrors to a tocsin.Signal, not {type(tocsin_signal).__name__}.")
    relay = make_relay(tocsin_signal, robust=robust)
    django_signal.connect(relay, weak=False, dispatch_uid=mirror_uid(tocsin_signal))
    return tocsin_signal


def unmirror(django_signal: DjangoSignal, tocsin_signal: Signal | None = None) -> bool:
    """Stop relaying *django_signal* to *tocsin_signal* (default: the one mirror() made).

    Returns True if a relay was disconnected.
    """
    if tocsin_signal is None:
        tocsin_signal = _created.pop(django_signal, None)
        if tocsin_signal is None:
            return False
    elif _created.get(django_signal) is tocsin_signal:
        del _created[django_signal]
    return django_signal.disconnect(dispatch_uid=mirror_uid(tocsin_signal))
