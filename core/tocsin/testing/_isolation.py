"""``isolated_signals()``: every signal's connections put back as they were, and
``live_signals()``, which finds the signals to watch.  Snapshots are the registry's
(:meth:`tocsin._registry.Registry.snapshot`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from tocsin._signal import Signal


def live_signals() -> list[Signal]:
    """Every :class:`~tocsin.Signal` alive in this process.

    tocsin keeps no registry of signals (a signal costs nothing until it is used), so
    they are found the way the garbage collector sees them, which takes some tens of
    milliseconds in a large process.
    """
    # type(), not isinstance(): isinstance() asks an object for its __class__, which a
    # lazy proxy (Django's settings, say) answers by setting itself up.
    verdicts: dict[type, bool] = {}
    found: list[Signal] = []
    for obj in gc.get_objects():
        kind = type(obj)
        verdict = verdicts.get(kind)
        if verdict is None:
            verdict = verdicts[kind] = issubclass(kind, Signal)
        if verdict:
            found.append(obj)
    return found


@contextmanager
def isolated_signals(*signals: Signal) -> Iterator[list[Signal]]:
    """Put the connections of *signals* (by default, every live signal) back afterwards.

    On exit, each signal has exactly the connections it had on entry, in their order,
    with their senders, ``dispatch_uid`` and priorities: connections made inside the
    block are removed (receivers connected by code, by ``@receiver`` in modules
    imported in the block, by plugins a manager loaded), connections removed inside the
    block are restored, and ``dispatch_uid``\\ s first seen inside the block are
    forgotten.  A receiver that was garbage-collected meanwhile stays gone.  Signals
    created inside the block are left as they are.  Yields the signals watched.

    Not meant to race with other threads connecting to the same signals.
    """
    targets = list(signals) if signals else live_signals()
    for signal in targets:
        if not isinstance(signal, Signal):
            raise TypeError(f"isolated_signals() takes tocsin Signals, not {signal!r}.")
    snapshots = [(signal, signal.registry.snapshot()) for signal in targets]
    try:
        yield targets
    finally:
        for signal, snapshot in snapshots:
            signal.registry.restore(snapshot)
