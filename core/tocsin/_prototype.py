"""Reading a typed signal's prototype: its name, its arguments and its docstring.

A typed signal is declared from a prototype function, whose parameters are exactly
what senders pass and receivers get::

    @Signal.typed
    def order_paid(sender: type[Shop], *, order: Order, amount: Decimal) -> None:
        "Sent when an order has been paid."

    order_paid.send(Shop, order=order, amount=Decimal("9.90"))    # checked
    order_paid.send(Shop, order=order, amont=Decimal("9.90"))     # mypy: unexpected keyword

This module checks the prototype and reads what the signal is made of; the signal
itself, :class:`~tocsin.TypedSignal`, is in :mod:`tocsin._signal`.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["read_prototype"]


def read_prototype(prototype: Callable[..., object]) -> tuple[str, list[str], str | None]:
    """Return the signal name, the keyword arguments and the docstring of *prototype*.

    Raises ``TypeError`` saying how to write the prototype when it does not take the
    sender first and the signal's arguments by keyword.
    """
    if not callable(prototype):
        raise TypeError(
            f"Signal.typed takes a prototype function, such as "
            f"'def order_paid(sender: type[Shop], *, order: Order) -> None', "
            f"not {prototype!r}."
        )
    import inspect  # only typed signals need it, and it is slow to import

    name = str(getattr(prototype, "__qualname__", None) or getattr(prototype, "__name__", "signal"))
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
    doc = getattr(prototype, "__doc__", None)
    return (f"{module}.{name}" if module else name), arguments, doc
