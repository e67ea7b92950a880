"""Typed signals: declare a signal's arguments once, and let the type checker hold
every ``send()`` and every receiver to them.

A typed signal is declared from a prototype function, whose parameters are exactly
what senders pass and receivers get::

    @Signal.typed
    def order_paid(sender: type[Shop], *, order: Order, amount: Decimal) -> None:
        "Sent when an order has been paid."

    order_paid.send(Shop, order=order, amount=Decimal("9.90"))    # checked
    order_paid.send(Shop, order=order, amont=Decimal("9.90"))     # mypy: unexpected keyword

    @receiver(order_paid)
    def mail_receipt(sender: type[Shop], *, order: Order, **kwargs: Any) -> None: ...

``TypedSignal`` is a ``Signal`` subclass generic over the prototype's parameters
(a ParamSpec).  The typed signatures below exist for type checkers only: at run time a
typed signal *is* an ordinary signal, with the same send path.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tocsin._send import Responses
from tocsin._signal import Signal

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    P = ParamSpec("P", default=...)
else:
    from typing import ParamSpec

    P = ParamSpec("P")

__all__ = ["TypedSignal"]

R = TypeVar("R")


class TypedSignal(Signal, Generic[P]):
    """A :class:`Signal` whose arguments are fixed by a prototype function.

    Create one with :meth:`Signal.typed`.  ``prototype`` is that function, kept for
    documentation; ``providing_args`` lists its keyword parameters.
    """

    prototype: Callable[P, object]

    if TYPE_CHECKING:
        # The same methods as Signal's, with the prototype's parameters in place of
        # ``sender, **named``; the implementations are Signal's own.

        def send(self, *args: P.args, **named: P.kwargs) -> Responses: ...

        def send_robust(self, *args: P.args, **named: P.kwargs) -> Responses: ...

        async def asend(self, *args: P.args, **named: P.kwargs) -> Responses: ...

        async def asend_robust(self, *args: P.args, **named: P.kwargs) -> Responses: ...

        def connect(  # type: ignore[override]
            self,
            receiver: Callable[P, R],
            sender: Any = None,
            weak: bool = True,
            dispatch_uid: Hashable | None = None,
            *,
            priority: int = 0,
        ) -> Callable[P, R]: ...


def from_prototype(prototype: Callable[..., object]) -> TypedSignal[Any]:
    """Build the typed signal that :meth:`Signal.typed` returns (see there)."""
    if not callable(prototype):
        raise TypeError(
            f"Signal.typed takes a prototype function, such as "
            f"'def order_paid(sender: type[Shop], *, order: Order) -> None', "
            f"not {prototype!r}."
        )
    import inspect

    name = getattr(prototype, "__qualname__", None) or getattr(prototype, "__name__", "signal")
    try:
        parameters = list(inspect.signature(prototype).parameters.values())
    except (TypeError, ValueError) as error:
        raise TypeError(f"Signal.typed cannot read the parameters of {name}: {error}") from None
    if (
        not parameters
        or parameters[0].name != "sender"
        or parameters[0].kind
        not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    ):
        raise TypeError(
            f"The prototype {name} must take the sender first, as in "
            f"'def {prototype.__name__}(sender: type[Shop], *, ...) -> None'."
        )
    arguments = []
    for parameter in parameters[1:]:
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.VAR_POSITIONAL):
            raise TypeError(
                f"The prototype {name} has {parameter}, which senders could not pass: "
                f"signal arguments are keyword arguments; put them after a '*'."
            )
        if parameter.kind is parameter.VAR_KEYWORD:
            continue
        arguments.append(parameter.name)
    module = getattr(prototype, "__module__", None)
    signal: TypedSignal[Any] = TypedSignal(
        providing_args=arguments, name=f"{module}.{name}" if module else name
    )
    signal.prototype = prototype
    signal.__doc__ = getattr(prototype, "__doc__", None)
    return signal
