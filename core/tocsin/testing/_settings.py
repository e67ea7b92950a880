"""``override_settings``: change attributes or mapping keys of any object for a block or a
test, announce every change with ``setting_changed``, and put everything back after."""

from __future__ import annotations

import functools
import inspect
import logging
import types
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, NamedTuple, TypeVar

from tocsin.signals.testing import setting_changed

#: Where an exception of a ``setting_changed`` receiver goes when another one outranks it.
logger = logging.getLogger("tocsin.testing")

#: A function or coroutine function that :class:`override_settings` decorates.
F = TypeVar("F", bound=Callable[..., Any])

#: The old value of a setting that did not exist before the override.
_MISSING: Any = object()


class _Saved(NamedTuple):
    """What one setting was before an override, and how to put it back."""

    name: str
    old: Any  # _MISSING when the setting did not exist
    delete: bool  # restore by removing what the override added


class override_settings:  # named like Django's, and used like a function
    """Set attributes of *target* (or keys, when *target* is a mutable mapping) to
    *values*, and put everything back afterwards.

    A context manager (``with`` and ``async with``), and a decorator for functions and
    coroutine functions.  For each setting, in the order given:

    * on entry, the value is set and ``setting_changed(sender, setting=name,
      value=new, enter=True)`` is sent, once every value is in place;
    * on exit, even when the block raised, the previous value is restored (a setting
      that did not exist before is removed again) and ``setting_changed(sender,
      setting=name, value=restored, enter=False)`` is sent, ``value`` being None for a
      removed setting.

    ``sender`` is *target* itself when it is a class or a module, else its class.
    Overrides nest; each restores what it found.  They must nest: tasks or threads
    whose overrides of the same setting overlap without nesting restore each other's
    values, as with Django's (each decorated call gets its own override, though).

    ``with`` sends with ``send`` (async receivers run in a fresh event loop, so not
    inside a running one); ``async with`` and decorated coroutine functions send with
    ``asend``.

    Receivers may object: if one raises on entry, everything is restored (and
    announced), and the exception propagates.  On exit every setting is restored and
    announced whatever receivers do; the first receiver exception is raised afterwards,
    unless the block itself raised, whose exception then wins (the receiver's is
    logged under ``tocsin.testing``).
    """

    def __init__(self, target: Any, /, **values: Any) -> None:
        self.target = target
        self.values = values
        if isinstance(target, (type, types.ModuleType)):
            self.sender: Any = target
        else:
            self.sender = type(target)
        self._stack: list[list[_Saved]] = []

    def __repr__(self) -> str:
        items = ", ".join(f"{name}={value!r}" for name, value in self.values.items())
        return f"override_settings({self.target!r}, {items})"

    # -- applying and restoring -------------------------------------------------------

    def _apply(self) -> list[_Saved]:
        target = self.target
        saved: list[_Saved] = []
        if isinstance(target, MutableMapping):
            try:
                for name, value in self.values.items():
                    old = target.get(name, _MISSING)
                    target[name] = value
                    saved.append(_Saved(name, old, old is _MISSING))
            except BaseException:
                self._restore(saved)
                raise
            return saved
        own = _own_attributes(target)
        try:
            for name, value in self.values.items():
                old = getattr(target, name, _MISSING)
                was_own = own is not None and name in own
                setattr(target, name, value)
                # An attribute that now lives in the object's own __dict__ but did not
                # before (it was missing, or inherited from a class) is removed again,
                # so the inherited value shows through as before.
                added = own is not None and not was_own and name in own
                saved.append(_Saved(name, old, added or old is _MISSING))
        except BaseException:
            self._restore(saved)
            raise
        return saved

    def _restore(self, saved: list[_Saved]) -> None:
        """Put back every saved setting, last applied first (cannot be interrupted by
        receivers: no signal is sent here).
        """
        target = self.target
        mapping = isinstance(target, MutableMapping)
        for item in reversed(saved):
            if mapping:
                if item.delete:
                    target.pop(item.name, None)
                else:
                    target[item.name] = item.old
            elif item.delete:
                if hasattr(target, item.name):
                    delattr(target, item.name)
            else:
                setattr(target, item.name, item.old)

    def _current(self, name: str) -> Any:
        if isinstance(self.target, MutableMapping):
            return self.target.get(name)
        return getattr(self.target, name, None)

    def _exit_events(self, saved: list[_Saved]) -> Iterator[tuple[str, Any]]:
        self._restore(saved)
        for item in saved:
            yield item.name, None if item.old is _MISSING else self._current(item.name)

    # -- sync -------------------------------------------------------------------------

    def __enter__(self) -> override_settings:
        saved = self._apply()
        try:
            for name, value in self.values.items():
                setting_changed.send(self.sender, setting=name, value=value, enter=True)
        except BaseException:
            self._undo(saved, raising=False)
            raise
        self._stack.append(saved)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._undo(self._stack.pop(), raising=exc_type is None)

    def _undo(self, saved: list[_Saved], *, raising: bool) -> None:
        first: Exception | None = None
        for name, value in self._exit_events(saved):
            try:
                setting_changed.send(self.sender, setting=name, value=value, enter=False)
            except Exception as error:
                first = _keep_first(first, error, raising, name)
        if first is not None:
            raise first

    # -- async ------------------------------------------------------------------------

    async def __aenter__(self) -> override_settings:
        saved = self._apply()
        try:
            for name, value in self.values.items():
                await setting_changed.asend(self.sender, setting=name, value=value, enter=True)
        except BaseException:
            await self._aundo(saved, raising=False)
            raise
        self._stack.append(saved)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        await self._aundo(self._stack.pop(), raising=exc_type is None)

    async def _aundo(self, saved: list[_Saved], *, raising: bool) -> None:
        first: Exception | None = None
        for name, value in self._exit_events(saved):
            try:
                await setting_changed.asend(self.sender, setting=name, value=value, enter=False)
            except Exception as error:
                first = _keep_first(first, error, raising, name)
        if first is not None:
            raise first

    # -- decorator --------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        if isinstance(func, type) or not callable(func):
            raise TypeError(
                f"override_settings decorates functions and coroutine functions, not "
                f"{func!r}; use it as a context manager inside the test instead."
            )
        target, values = self.target, self.values
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                # A fresh override per call: concurrent calls must not share a stack.
                async with override_settings(target, **values):
                    return await func(*args, **kwargs)

            return async_inner  # type: ignore[return-value]

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with override_settings(target, **values):
                return func(*args, **kwargs)

        return inner  # type: ignore[return-value]


def _own_attributes(target: Any) -> Any:
    """The object's own attribute namespace (``__dict__``), or None when it has none."""
    try:
        return vars(target)
    except TypeError:
        return None


def _keep_first(
    first: Exception | None, error: Exception, raising: bool, name: str
) -> Exception | None:
    if first is None and raising:
        return error
    logger.error(
        "A setting_changed receiver raised while %s was being restored",
        name,
        exc_info=error,
    )
    return first
