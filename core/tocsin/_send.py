"""The send path of :class:`~tocsin.Signal`, in Python and (where built) in C.

:class:`SendCore` is what ``Signal.send`` runs: the hot path, kept apart so that its
C twin in ``tocsin._speedups`` can stand in for it exactly.  The C one is used when it
was built (``pip`` compiles it where a C compiler is at hand) unless the environment
says ``TOCSIN_PURE_PYTHON=1``; both behave the same, and the test suite runs on both.
:data:`COMPILED` says which one this process runs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from tocsin._switches import env_switch

# typing is not imported at run time (see tocsin._refs).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tocsin._refs import Holder

__all__ = ["COMPILED", "PureSendCore", "Responses", "SendCore"]

Responses = list[tuple[Callable[..., "Any"], "Any"]]


class PureSendCore:
    """Signal's send path in pure Python: the reference for the C version."""

    __slots__ = ("_connections", "_send_cache")

    # lookup key -> connection; only its emptiness is read here.
    _connections: dict[Hashable, Any]
    # id(sender) -> that sender's receiver holders in dispatch order, present only for
    # senders whose receivers are all synchronous and whose id() cannot be reused while
    # the entry exists (Signal._watch sees to that).
    _send_cache: dict[Hashable, tuple[Holder, ...]]

    # The hot path.  Everything was decided at connect time and cached per sender: an
    # entry is an immutable tuple of zero-argument callables (weak references, or
    # strong holders) in dispatch order.  A signal with no connection at all answers []
    # before even the lookup.  So a send is one dict lookup and a plain loop that skips
    # receivers collected since the tuple was built (an explicit loop, not a
    # comprehension: it is the faster of the two on 3.10 and 3.11, and as fast later,
    # and it adds no frame: Django's receivers count on exactly one, issue 12).
    # Anything unusual (no entry yet, a str or int sender, async receivers, muted)
    # misses the lookup and asks the subclass for the receivers.
    def send(self, sender: Any, **named: Any) -> Responses:
        """Call every receiver for *sender*; return ``[(receiver, response), ...]``.

        A receiver's exception propagates, and later receivers are not called.
        Synchronous receivers run first, then async ones: outside an event loop they
        are run to completion; inside one, use :meth:`asend` instead.
        """
        if not self._connections:
            return []
        holders = self._send_cache.get(id(sender))
        waiting: list[Callable[..., Any]] = []
        if holders is None:
            holders, waiting = self._receivers_for(sender, named, robust=False)
        responses = []
        for holder in holders:
            receiver = holder()
            if receiver is not None:
                responses.append((receiver, receiver(signal=self, sender=sender, **named)))
        if waiting:
            responses += self._run_async(waiting, sender, named, robust=False)
        return responses

    # The same loop again, with each receiver's Exception as its response: a helper
    # shared with send() would be one more frame between caller and receiver.
    def send_robust(self, sender: Any, **named: Any) -> Responses:
        """Like :meth:`send`, but an ``Exception`` from a receiver becomes its response.

        Every receiver is called; each failure is logged at ERROR with its traceback
        under the ``tocsin.dispatch`` logger.
        """
        if not self._connections:
            return []
        holders = self._send_cache.get(id(sender))
        waiting: list[Callable[..., Any]] = []
        if holders is None:
            holders, waiting = self._receivers_for(sender, named, robust=True)
        responses = []
        for holder in holders:
            receiver = holder()
            if receiver is not None:
                try:
                    response = receiver(signal=self, sender=sender, **named)
                except Exception as error:
                    self._log_robust_failure(receiver, error)
                    response = error
                responses.append((receiver, response))
        if waiting:
            responses += self._run_async(waiting, sender, named, robust=True)
        return responses

    # The hooks the subclass (Signal) implements.  The C send calls _send_slow and
    # _log_robust_failure, by those names; this class calls the others.

    def _send_slow(self, sender: Any, named: dict[str, Any], *, robust: bool) -> Responses:
        """Send to *sender*'s receivers without the send cache (the C send's slow path)."""
        raise NotImplementedError

    def _receivers_for(
        self, sender: Any, named: dict[str, Any], robust: bool
    ) -> tuple[tuple[Holder, ...], list[Callable[..., Any]]]:
        """The synchronous receivers' holders, and the live async receivers."""
        raise NotImplementedError

    def _run_async(
        self,
        receivers: list[Callable[..., Any]],
        sender: Any,
        named: dict[str, Any],
        robust: bool = False,
    ) -> Responses:
        """Run async receivers to completion from synchronous code; their responses."""
        raise NotImplementedError

    def _log_robust_failure(self, receiver: Callable[..., Any], error: Exception) -> None:
        """Log a receiver's failure in ``send_robust`` (Django's method of that name)."""
        raise NotImplementedError


SendCore: type[PureSendCore]
if TYPE_CHECKING or env_switch("TOCSIN_PURE_PYTHON"):
    SendCore = PureSendCore
else:
    try:
        from tocsin._speedups import SendCore
    except ImportError:  # not built here (no C compiler when installed): same behaviour
        SendCore = PureSendCore

#: Whether sends run the C version of :class:`PureSendCore`.
COMPILED = SendCore is not PureSendCore
