"""Relays from Django's built-in signals to tocsin's catalogue signals of the same name.

A relay is an ordinary Django receiver: Django calls it as it calls any receiver, and
it sends the tocsin signal with the same ``sender`` and every argument Django sent
except ``signal``.  Before sending it asks the tocsin signal ``has_listeners(sender)``,
so a receiver for another sender costs one call and a cached look-up.

A relay is connected to Django's signal only while its tocsin signal is active (has at
least one receiver, for any sender): :func:`connect_relays` *enables* a relay, which
watches its tocsin signal (:meth:`tocsin.Signal.watch_activity`) and connects the
Django receiver when the first tocsin receiver connects, and disconnects it when the
last one goes.  So with no tocsin receiver Django's signals have exactly the receivers
they would have without tocsin, and Django keeps its own shortcut for a signal nobody
listens to (which matters for ``pre_init`` and ``post_init``, sent for every model
instance).  A relay connected late runs after the Django receivers connected before it.

Each relay is connected with ``weak=False`` and the ``dispatch_uid``
``"tocsin.contrib.django.relay:<name>"``, so connecting again (``ready()`` run twice, a
test calling :func:`connect_relays`) never adds a second relay and never sends twice.

Exceptions: Django sends every built-in signal but one with ``send``, so a relay uses
tocsin's ``send``: a tocsin receiver's exception propagates to Django exactly as a
Django receiver's would.  ``setting_changed`` is sent with ``send`` when a setting is
applied and with ``send_robust`` when it is restored; its relay therefore calls every
tocsin receiver (``send_robust``, failures logged under ``tocsin.dispatch``) and then
raises the first failure, which Django propagates or collects as it would its own.

``user_login_failed``: Django masks the credentials it sends (``api``, ``token``,
``key``, ``secret``, ``password``, ``signature``), and tocsin's signal masks them again
with its wider list (``pass``, ``auth``, ``session``, ...) before any receiver sees them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.dispatch import Signal as DjangoSignal

from tocsin import Signal
from tocsin import signals as catalogue

__all__ = [
    "RELAYED",
    "UID_PREFIX",
    "Relay",
    "connect_after_relay",
    "connect_relays",
    "disconnect_relays",
    "make_relay",
    "relays",
]

#: Every relay's Django ``dispatch_uid`` is this prefix followed by the signal's name.
UID_PREFIX = "tocsin.contrib.django.relay:"

#: The names of the relayed signals, by family, as Django and the catalogue name them.
RELAYED: tuple[str, ...] = (
    # auth
    "user_logged_in",
    "user_logged_out",
    "user_login_failed",
    # models
    "pre_init",
    "post_init",
    "pre_save",
    "post_save",
    "pre_delete",
    "post_delete",
    "m2m_changed",
    "class_prepared",
    # request
    "request_started",
    "request_finished",
    "got_request_exception",
    # management
    "pre_migrate",
    "post_migrate",
    # testing
    "setting_changed",
    # db
    "connection_created",
)

#: Relays that must call every tocsin receiver (Django sends them robustly, too).
_ROBUST = frozenset({"setting_changed"})

Receiver = Callable[..., None]


class Relay(NamedTuple):
    """One Django signal, the tocsin signal it is relayed to, and the relay itself."""

    name: str
    django_signal: DjangoSignal
    tocsin_signal: Signal
    receiver: Receiver

    @property
    def dispatch_uid(self) -> str:
        return UID_PREFIX + self.name


def make_relay(target: Signal, *, robust: bool = False, name: str | None = None) -> Receiver:
    """Return a Django receiver that re-sends what it receives on the tocsin *target*.

    It checks ``target.has_listeners(sender)`` first and sends nothing when no tocsin
    receiver would be called.  With ``robust``, every tocsin receiver is called
    (``send_robust``) and the first failure is raised afterwards.
    """
    has_listeners = target.has_listeners
    if robust:
        send_robust = target.send_robust

        def relay(signal: object = None, sender: Any = None, **named: Any) -> None:
            if has_listeners(sender):
                for _, response in send_robust(sender, **named):
                    if isinstance(response, Exception):
                        raise response

    else:
        send = target.send

        def relay(signal: object = None, sender: Any = None, **named: Any) -> None:
            if has_listeners(sender):
                send(sender, **named)

    label = name or target.name or "signal"
    relay.__name__ = relay.__qualname__ = f"relay_to_tocsin_{label.rpartition('.')[2]}"
    relay.__doc__ = f"Relay a Django signal to {target!r}."
    return relay


def _django_signals() -> dict[str, DjangoSignal]:
    from django.contrib.auth import signals as auth
    from django.core import signals as core
    from django.db.backends import signals as backends
    from django.db.models import signals as models

    # setting_changed lives in django.core.signals (django.test.signals re-exports it),
    # so relaying it imports nothing of django.test.
    found: dict[str, DjangoSignal] = {}
    for name in RELAYED:
        for module in (auth, models, core, backends):
            signal = getattr(module, name, None)
            if isinstance(signal, DjangoSignal):
                found[name] = signal
                break
        else:  # pragma: no cover - every supported Django version has them all
            raise LookupError(f"Django has no built-in signal named {name!r}.")
    return found


@dataclass(eq=False)
class _State:
    """Whether a relay is enabled and connected; changed only under ``lock``."""

    relay: Relay
    lock: threading.RLock = field(default_factory=threading.RLock)
    enabled: bool = False  # connect_relays() asked for it (and its watcher is registered)
    connected: bool = False  # as far as this module connected it
    # Django receivers that must run after the relay (dispatch_uid: receiver).
    followers: dict[str, Receiver] = field(default_factory=dict)

    def on_activity(self, signal: object = None) -> None:
        """The tocsin signal's activity watcher: bring the Django side in line."""
        with self.lock:
            self.sync()

    def sync(self) -> None:
        """Connect the relay if it is enabled and its tocsin signal is active, else
        disconnect it (lock held).  Reads the state now, so the last sync wins."""
        relay = self.relay
        django_signal, uid = relay.django_signal, relay.dispatch_uid
        if self.enabled and relay.tocsin_signal.is_active():
            if self.connected:  # idempotent: restores a relay disconnected behind our back
                django_signal.connect(relay.receiver, weak=False, dispatch_uid=uid)
                return
            # Connected now, it would come after its followers: move them after it.
            moved = [
                (key, receiver)
                for key, receiver in self.followers.items()
                if django_signal.disconnect(dispatch_uid=key)
            ]
            django_signal.connect(relay.receiver, weak=False, dispatch_uid=uid)
            for key, receiver in moved:
                django_signal.connect(receiver, weak=False, dispatch_uid=key)
            self.connected = True
        else:
            django_signal.disconnect(dispatch_uid=uid)
            self.connected = False


_relays: dict[str, Relay] = {}
_states: dict[str, _State] = {}
_build_lock = threading.Lock()


def relays() -> dict[str, Relay]:
    """Every relay by signal name (built once; the same receivers on every call)."""
    if not _relays:
        with _build_lock:
            if not _relays:
                built = {}
                for name, django_signal in _django_signals().items():
                    target = getattr(catalogue, name)
                    receiver = make_relay(target, robust=name in _ROBUST, name=name)
                    built[name] = Relay(name, django_signal, target, receiver)
                _states.update((name, _State(relay)) for name, relay in built.items())
                _relays.update(built)
    return dict(_relays)


def _select(names: Iterable[str] | None) -> list[Relay]:
    table = relays()
    if names is None:
        return list(table.values())
    if isinstance(names, str):
        raise TypeError(f"names must be a list of signal names, not the string {names!r}.")
    selected = []
    for name in names:
        if name not in table:
            raise ValueError(
                f"{name!r} is not a relayed Django signal; the relayed signals are "
                f"{', '.join(RELAYED)}."
            )
        selected.append(table[name])
    return selected


def connect_relays(names: Iterable[str] | None = None) -> None:
    """Enable the relays (all of them, or those *names*); enabling twice is a no-op.

    An enabled relay is connected to its Django signal while its tocsin signal has a
    receiver (see the module documentation): at once if it has one already.
    """
    for relay in _select(names):
        state = _states[relay.name]
        with state.lock:
            if not state.enabled:
                state.enabled = True
                relay.tocsin_signal.watch_activity(state.on_activity)
            state.sync()


def disconnect_relays(names: Iterable[str] | None = None) -> int:
    """Disable and disconnect the relays (all, or those *names*): they stop watching
    their tocsin signals.  Return how many were enabled (or connected)."""
    count = 0
    for relay in _select(names):
        state = _states[relay.name]
        with state.lock:
            relay.tocsin_signal.unwatch_activity(state.on_activity)
            was_on = state.enabled
            state.enabled = False
            state.connected = False
            connected = relay.django_signal.disconnect(dispatch_uid=relay.dispatch_uid)
            count += was_on or connected
    return count


def connect_after_relay(name: str, receiver: Receiver, dispatch_uid: str) -> None:
    """Connect *receiver* (strongly, with *dispatch_uid*) to the Django signal *name*,
    and keep it after that signal's relay whenever the relay is connected later."""
    (relay,) = _select([name])
    state = _states[name]
    with state.lock:
        state.followers[dispatch_uid] = receiver
        relay.django_signal.connect(receiver, weak=False, dispatch_uid=dispatch_uid)
