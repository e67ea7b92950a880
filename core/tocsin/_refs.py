"""Identity of receivers and senders, and how tocsin holds on to them.

A connection is keyed by *who* receives and *from whom*.  Receivers are compared by
identity (a bound method by its object and function, as Django does); senders by value
when they are exact ``str`` or ``int``, by identity otherwise.  Identity keys are
``id()`` numbers, which Python reuses once an object is freed, so every identity key
handed out here is paired with a way to tell that its object is still the one meant:
a weak reference with a death callback, or a strong reference that keeps it alive.
"""

from __future__ import annotations

import functools
import itertools
import types
import weakref
from collections.abc import Callable, Hashable

# Not typing.TYPE_CHECKING: importing typing (and the re, enum and contextlib it
# imports) would cost more than the rest of ``import tocsin`` together.  Type checkers
# read a constant of this name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple, final

__all__ = [
    "ANY_SENDER",
    "IMMORTAL_SENDERS",
    "NamedTuple",
    "ReceiverRef",
    "ReceiverWeakBuiltinMethod",
    "ReceiverWeakMethod",
    "SenderRef",
    "accepts_kwargs",
    "describe",
    "final",
    "is_async_callable",
    "is_builtin_method",
    "receiver_identity",
    "required_arguments",
    "sender_key_of",
    "strong_holder",
]

#: The sender key of a connection made with ``sender=None``: receives from everyone.
ANY_SENDER: Hashable = ("tocsin", "any-sender")

#: A zero-argument callable that returns the receiver, or None once it is gone.
Holder = Callable[[], "Callable[..., Any] | None"]


class ReceiverRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a receiver function that remembers its connection key."""

    __slots__ = ("lookup_key",)
    lookup_key: Hashable


class ReceiverWeakMethod(weakref.WeakMethod):  # type: ignore[type-arg]
    """A weak reference to a bound-method receiver that remembers its connection key."""

    __slots__ = ("lookup_key",)
    lookup_key: Hashable


class ReceiverWeakBuiltinMethod(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a bound method written in C (a dict subclass's ``update``,
    a compiled class's method), which, like a Python bound method, is made anew on each
    attribute access: it holds the object weakly and looks the method up when called."""

    __slots__ = ("lookup_key", "name")
    lookup_key: Hashable
    name: str

    def __new__(cls, method: Any, callback: Callable[[Any], object]) -> ReceiverWeakBuiltinMethod:
        self = super().__new__(cls, method.__self__, callback)
        self.name = method.__name__
        return self

    def __call__(self) -> Callable[..., Any] | None:
        obj = super().__call__()
        return None if obj is None else getattr(obj, self.name)


def is_builtin_method(receiver: object) -> bool:
    """Whether *receiver* is a method written in C bound to an object (not a module's
    function such as ``print``): such a bound object is made anew on each access."""
    if isinstance(receiver, (types.BuiltinMethodType, types.MethodWrapperType)):
        owner = receiver.__self__
        return owner is not None and not isinstance(owner, types.ModuleType)
    return False


class SenderRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a sender that remembers its sender key."""

    __slots__ = ("key",)
    key: Any


def strong_holder(obj: Callable[..., Any]) -> Holder:
    """Return a zero-argument C-level callable that always returns *obj*.

    Used for strongly held receivers that cannot be weakly referenced, so the send
    loop can treat every entry alike (``ref()``) without a Python-level call.
    """
    return itertools.repeat(obj).__next__


def sender_key_of(sender: Any) -> Hashable:
    """Return the key a sender is matched by: exact str by value, exact int by value
    (wrapped, so it cannot collide with an ``id()``), anything else by identity.
    """
    kind = type(sender)
    if kind is str:
        return sender  # type: ignore[no-any-return]
    if kind is int:
        return (int, sender)
    return id(sender)


#: Senders that live as long as the interpreter: their id() is never reused.
IMMORTAL_SENDERS = (None, True, False, Ellipsis, NotImplemented)


def receiver_identity(receiver: Callable[..., Any]) -> Hashable:
    """Return the identity of a receiver: (object, function) for a bound method,
    (object, name) for a bound method written in C."""
    if isinstance(receiver, types.MethodType):
        return (id(receiver.__self__), id(receiver.__func__))
    if is_builtin_method(receiver):
        return (id(receiver.__self__), receiver.__name__)  # type: ignore[attr-defined]
    return id(receiver)


# Code flags, as in the inspect module (which is imported only when needed: it and
# asyncio are most of what importing tocsin would otherwise cost).
CO_VARARGS = 0x04
CO_VARKEYWORDS = 0x08
CO_COROUTINE = 0x80


def accepts_kwargs(receiver: Callable[..., Any]) -> bool:
    """Whether *receiver* takes ``**kwargs``; True when it cannot be introspected.

    Plain functions and bound methods are answered from their code flags (fast, and
    no reference to the receiver is kept anywhere), and so are instances of a plain
    class whose ``__call__`` is a plain function (a plugin manager's stand-ins for
    declared receivers, say: 300 of them at start-up); other callables go through
    :func:`inspect.signature`.
    """
    target: Any = receiver
    if isinstance(target, types.MethodType):
        target = target.__func__
    if isinstance(target, types.FunctionType):
        return bool(target.__code__.co_flags & CO_VARKEYWORDS)
    call = _plain_call(target)
    if call is not None:
        code = call.__code__
        if not code.co_argcount and not code.co_flags & CO_VARARGS:
            return True  # no parameter for the instance: inspect.signature gives up too
        return bool(code.co_flags & CO_VARKEYWORDS)
    import inspect

    try:
        signature = inspect.signature(receiver)
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def required_arguments(receiver: Callable[..., Any]) -> list[str] | None:
    """The parameters *receiver* cannot be called without when a signal calls it by
    keyword: those with no default (positional-only ones included, which no keyword
    can fill).  None when it cannot be introspected.

    Plain functions, bound methods and instances of a plain class with a plain
    ``__call__`` are read from their code object, as :func:`accepts_kwargs` reads
    them; other callables through :func:`inspect.signature`.
    """
    target: Any = receiver
    bound = isinstance(target, types.MethodType)
    if bound:
        target = target.__func__
    elif not isinstance(target, types.FunctionType):
        call = _plain_call(target)
        if call is not None:
            if not call.__code__.co_argcount:
                if not call.__code__.co_flags & CO_VARARGS:
                    return None  # no parameter for the instance: inspect gives up too
                return _required(call, bound=False)  # (*args, ...): nothing to drop
            return _required(call, bound=True)
    if isinstance(target, types.FunctionType):
        return _required(target, bound)
    import inspect

    try:
        # Not through __wrapped__: a wrapper (functools.wraps, a DeferredReceiver) is
        # what the signal calls, whatever the wrapped function takes.
        signature = inspect.signature(receiver, follow_wrapped=False)
    except (TypeError, ValueError):
        return None
    return [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _required(function: types.FunctionType, bound: bool) -> list[str]:
    """:func:`required_arguments` of a plain function, less its first parameter when
    *bound* (a method's ``self``)."""
    code = function.__code__
    positional = list(code.co_varnames[: code.co_argcount])
    keyword_only = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    defaults = len(function.__defaults__ or ())
    required = positional[: len(positional) - defaults]
    if bound:
        required = required[1:]  # self
    kwdefaults = function.__kwdefaults__ or {}
    return required + [name for name in keyword_only if name not in kwdefaults]


def _plain_call(obj: Any) -> types.FunctionType | None:
    """The ``__call__`` function of *obj*'s class when it alone makes *obj*'s signature,
    as :func:`inspect.signature` reads it (that function's, less its first parameter);
    None when anything else could count (a class, a descriptor, a partial, a wrapper,
    an explicit ``__signature__``, a function-like object), or when it is not plain."""
    cls = type(obj)
    call = getattr(cls, "__call__", None)  # noqa: B004 - the method itself, not callable()
    if (
        type(call) is not types.FunctionType
        or isinstance(obj, (type, functools.partial))
        or hasattr(cls, "__get__")
        or hasattr(obj, "__wrapped__")
        or hasattr(obj, "__signature__")
        or hasattr(obj, "_partialmethod")
        or hasattr(obj, "__code__")
        or hasattr(call, "__wrapped__")
        or hasattr(call, "__signature__")
        or hasattr(call, "_partialmethod")
    ):
        return None
    return call


def _marked_async(obj: Any) -> bool:
    func = obj
    while isinstance(func, (types.MethodType, functools.partial)):
        func = func.__func__ if isinstance(func, types.MethodType) else func.func
    if isinstance(func, types.FunctionType) and func.__code__.co_flags & CO_COROUTINE:
        return True
    if getattr(func, "_is_coroutine_marker", None) is not None:
        import inspect  # inspect.markcoroutinefunction (3.12+) was used

        return inspect.iscoroutinefunction(obj)
    # asgiref.sync.markcoroutinefunction on Python < 3.12 sets this marker.
    mark = getattr(func, "_is_coroutine", None)
    if mark is None:
        return False
    import asyncio.coroutines

    return mark is getattr(asyncio.coroutines, "_is_coroutine", object())


def is_async_callable(receiver: Callable[..., Any]) -> bool:
    """Whether calling *receiver* returns an awaitable that must be awaited.

    True for coroutine functions, callables marked as such (``inspect.
    markcoroutinefunction`` or asgiref's marker), partials of them, and instances
    whose ``__call__`` is a coroutine function.
    """
    if _marked_async(receiver):
        return True
    if not isinstance(receiver, (types.FunctionType, types.MethodType)):
        call = getattr(type(receiver), "__call__", None)  # noqa: B004
        return call is not None and _marked_async(call)
    return False


def describe(receiver: object) -> str:
    """A readable name for any callable, for messages and logs."""
    name = getattr(receiver, "__qualname__", None)
    return name if isinstance(name, str) else repr(receiver)


# -- typing's run-time parts, without typing ---------------------------------------------
# The core modules import these two from here, not from typing, so that ``import tocsin``
# does not import typing; type checkers see typing's own (above).

if not TYPE_CHECKING:

    def final(cls: Any) -> Any:
        """``typing.final`` at run time: sets ``__final__`` where it can, as it does."""
        try:
            cls.__final__ = True
        except (AttributeError, TypeError):
            pass
        return cls

    class _NamedTupleMeta(type):
        """Makes ``class C(NamedTuple)`` a :func:`collections.namedtuple`, as
        ``typing.NamedTuple`` does: the annotated names are the fields (those with a value
        are the defaults), everything else in the class body (docstring, methods,
        properties) is set on the class."""

        def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
            import collections

            annotations = namespace.get("__annotations__", {})
            fields = list(annotations)
            defaults = [namespace[field] for field in fields if field in namespace]
            cls = collections.namedtuple(
                name, fields, defaults=defaults, module=namespace["__module__"]
            )
            cls.__annotations__ = dict(annotations)
            for key, value in namespace.items():
                if key not in ("__module__", "__annotations__") and key not in fields:
                    setattr(cls, key, value)
            return cls

    NamedTuple = type.__new__(_NamedTupleMeta, "NamedTuple", (), {})
