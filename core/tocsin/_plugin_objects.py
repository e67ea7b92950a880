"""What a plugin object declares: the ``@receiver`` marks of a module, a class or an
instance, read the way pluggy reads hook implementations (attributes, in ``dir()``
order), without calling anything but attribute access.  The plugin manager asks this
when it imports or registers a plugin (see :mod:`tocsin._manager`)."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from tocsin._signal import ReceiverMark, in_class_body

__all__ = ["declared_by", "marked_attributes"]


def _method(func: object) -> bool:
    """A plain function of a class body: without an instance it has no self to be called
    with, so a module does not declare it (an instance of the class does)."""
    return isinstance(func, types.FunctionType) and in_class_body(func)


def declared_by(
    obj: object, recorded: list[tuple[Callable[..., Any], list[ReceiverMark]]]
) -> list[tuple[Callable[..., Any], ReceiverMark]]:
    """The (receiver, mark) pairs a plugin object declares, pluggy-style.

    A module declares the marked functions recorded while it was imported and those
    found in its namespace, as long as they were defined in the plugin's own package
    (a function imported from elsewhere belongs to elsewhere).  An instance or class
    declares its marked attributes: bound methods, for an instance.
    """
    found: dict[tuple[int, int], tuple[Callable[..., Any], ReceiverMark]] = {}
    if isinstance(obj, types.ModuleType):
        package = obj.__name__.partition(".")[0]
        prefix = package + "."
        for func, marks in recorded:
            module = getattr(func, "__module__", None) or ""
            if (module == package or module.startswith(prefix)) and not _method(func):
                _add_declared(found, func, marks)
        for value, marks in marked_attributes(obj):
            if not callable(value):
                continue
            target = id(_underlying(value))
            if all((target, id(mark)) in found for mark in marks):
                continue  # declared already, with every one of these marks
            module = getattr(value, "__module__", None) or ""
            if (module == package or module.startswith(prefix)) and not _method(value):
                _add_declared(found, value, marks)
    else:
        for attribute in dir(obj):
            if attribute.startswith("__"):
                continue
            value = getattr(obj, attribute, None)
            declared = getattr(value, "__tocsin_receivers__", None)
            if declared and callable(value):
                _add_declared(found, value, declared)
    return list(found.values())


def _underlying(func: Any) -> Any:
    """What a (bound) receiver is declared as: ``func.__func__`` if it has one."""
    if type(func) is types.FunctionType:
        return func.__dict__.get("__func__", func)
    return getattr(func, "__func__", func)


def _add_declared(
    found: dict[tuple[int, int], tuple[Callable[..., Any], ReceiverMark]],
    func: Callable[..., Any],
    marks: list[ReceiverMark],
) -> None:
    target = id(_underlying(func))
    for mark in marks:
        found.setdefault((target, id(mark)), (func, mark))


def marked_attributes(module: types.ModuleType) -> list[tuple[Any, Any]]:
    """(value, marks) of the module's attributes with ``@receiver`` marks, in ``dir()``
    order: what ``getattr(module, name)`` for each name of ``dir(module)`` finds."""
    namespace = module.__dict__
    if type(module) is not types.ModuleType or "__dir__" in namespace:
        # dir() or attribute access of the module's own making: ask them.
        found = []
        for attribute in dir(module):
            value = getattr(module, attribute, None)
            marks = getattr(value, "__tocsin_receivers__", None)
            if marks:
                found.append((value, marks))
        return found
    # A plain module: dir() is its namespace, sorted, and getattr() reads the namespace
    # (ModuleType's own data descriptors, __dict__ and __class__, carry no marks).  Only
    # callables can be receivers, so nothing else is asked for marks.
    named = []
    function = types.FunctionType
    for attribute, value in list(namespace.items()):
        if not callable(value):
            continue
        if type(value) is function:
            marks = value.__dict__.get("__tocsin_receivers__")
        elif attribute == "__dict__" or attribute == "__class__":
            continue
        else:
            marks = getattr(value, "__tocsin_receivers__", None)
        if marks:
            named.append((attribute, value, marks))
    if len(named) > 1:
        named.sort(key=lambda item: item[0])
    return [(value, marks) for _, value, marks in named]
