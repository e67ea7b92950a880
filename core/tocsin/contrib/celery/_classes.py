"""Classes by path: ``"module:qualname"`` for a class, and the class again for the path,
found without importing anything, which is how classes travel in messages."""

from __future__ import annotations

import sys
import types
import weakref
from collections.abc import Mapping
from typing import Any, cast

from tocsin._errors import DeferredDecodeError
from tocsin.contrib.celery._codecs import expect

#: The paths already checked, by class: checking one means looking the class up again.
_paths: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()


def class_path(cls: type) -> str:
    """``"module:qualname"`` for *cls*; TypeError unless :func:`find_class` finds it back."""
    try:
        return _paths[cls]
    except (KeyError, TypeError):
        pass
    path = f"{cls.__module__}:{cls.__qualname__}"
    if find_class(path) is not cls:
        raise TypeError(
            f"class {cls.__qualname__} cannot be named by module and qualified name "
            f"({path!r} does not lead back to it: a class defined in a function, or "
            f"replaced since), so a worker could not find it"
        )
    try:
        _paths[cls] = path
    except TypeError:
        pass
    return path


def find_class(path: str) -> type | None:
    """The class ``"module:qualname"`` names, if that module is already imported.

    Only ``sys.modules`` and the namespaces of modules and classes are read: nothing is
    imported, and no attribute hook (``__getattr__``, descriptors) runs.
    """
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        return None
    module = sys.modules.get(module_name)
    if not isinstance(module, types.ModuleType):
        return None
    namespace: Mapping[str, Any] = vars(module)
    found: Any = None
    for part in qualname.split("."):
        found = namespace.get(part)
        if not isinstance(found, type):
            return None
        namespace = vars(found)
    return cast(type, found)


def class_from(data: Any, what: str) -> type:
    path = expect(data, str, what)
    cls = find_class(path)
    if cls is None:
        raise DeferredDecodeError(
            f"{what} {path!r} is not a class of a module this worker has imported "
            f"(messages never make a worker import anything)."
        )
    return cls
