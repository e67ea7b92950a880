"""Deferred receivers: a receiver that runs in a Celery worker, not in the sender.

Wrap a receiver with :func:`deferred` and connect the result as usual::

    from tocsin import receiver
    from tocsin.contrib.celery import deferred

    @receiver(order_paid, sender=Shop, dispatch_uid="mail-receipt")
    @deferred(on_commit=True, max_retries=5)
    def mail_receipt(sender, order, amount, tocsin_message_id, **kwargs):
        ...  # runs in a worker; tocsin_message_id tells a redelivery apart

What is connected is a :class:`DeferredReceiver`, an ordinary receiver to the core: the
sender filter, ``dispatch_uid``, weak references and plugin enable/disable apply to it
exactly as to any other receiver, and the send path is the core's, unchanged.  When a
send reaches it, it encodes the signal's name, its own identity (``module:qualname``),
the sender and the arguments as JSON, enqueues one Celery task, and returns that task's
``AsyncResult`` as its response.  An argument that cannot travel as JSON is refused
right there, with a :class:`DeferredEncodeError` naming the argument: ``send()``
propagates it to the caller; ``send_robust()`` returns it as this receiver's response.

In the worker, one task (``tocsin.deliver``) loads the tocsin plugins once per worker
process, looks the receiver up **only among the deferred receivers connected there to
the named signal** (a message naming anything else is rejected and logged, and nothing
it names is ever imported), decodes the arguments and calls the function as
``func(signal=..., sender=..., tocsin_message_id=..., tocsin_attempt=..., **named)``.

Delivery is at least once: the task is acknowledged late and requeued if its worker is
lost, so a receiver may run more than once for one send; ``tocsin_message_id`` (the
Celery task id, the same on every delivery and retry of one send) lets it notice.

Only JSON travels (the broker is a trust boundary): the task is sent with the JSON
serializer, and :func:`install` refuses an app whose ``accept_content`` admits pickle
or YAML.  Values JSON has no type for travel through a registry of :class:`Codec`\\ s:
tuples, sets, bytes, dates and times, decimals, UUIDs, enums and classes are built in,
and so are model instances, which travel as class path and primary key and are loaded
again in the worker (SQLAlchemy, with the session factory you give
:func:`set_session_factory`; Django, through its app registry).

This module is the ``tocsin[celery]`` extra; it is the only part of tocsin that
imports Celery.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import decimal
import enum
import functools
import inspect
import json
import logging
import os
import random
import sys
import threading
import types
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, cast, overload

from celery import current_app  # type: ignore[import-untyped, import-not-found, unused-ignore]
from celery.exceptions import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
    Reject,
)
from celery.signals import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
    worker_process_init,
)

from tocsin._errors import TocsinError
from tocsin._signal import ReceiverMark, Signal

if TYPE_CHECKING:
    from tocsin._manager import PluginManager

__all__ = [
    "TASK_NAME",
    "Codec",
    "CodecRegistry",
    "DecodeContext",
    "DeferredConfigurationError",
    "DeferredDecodeError",
    "DeferredEncodeError",
    "DeferredError",
    "DeferredReceiver",
    "DjangoModelCodec",
    "MissingInstanceError",
    "RetryPolicy",
    "SQLAlchemyCodec",
    "class_path",
    "codecs",
    "connect_deferred",
    "deferred",
    "find_class",
    "install",
    "register_codec",
    "resolve",
    "set_session_factory",
]

logger = logging.getLogger("tocsin.contrib.celery")

#: The name of the one Celery task that delivers every deferred receiver's messages.
TASK_NAME = "tocsin.deliver"

#: The keyword arguments the worker adds to each call; a send may not use them.
RESERVED_ARGUMENTS = frozenset({"signal", "sender", "tocsin_message_id", "tocsin_attempt"})

#: Content types that deserialize to arbitrary objects; an app accepting one is refused.
UNSAFE_CONTENT = frozenset(
    {
        "pickle",
        "application/x-python-serialize",
        "yaml",
        "application/x-yaml",
        "application/yaml",
        "text/yaml",
    }
)

_VERSION = 1
_TAG = "__tocsin__"
_MAX_DEPTH = 64
_ENVELOPE_KEYS = frozenset({"tocsin", "signal", "receiver", "sender", "named"})

#: A value JSON can carry, as the codecs produce and consume it.
JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"

F = TypeVar("F", bound=Callable[..., Any])
OnCommit = bool | Literal["sqlalchemy", "django"]


# -- errors ---------------------------------------------------------------------------


class DeferredError(TocsinError):
    """Base class of the errors of deferred delivery."""


class DeferredEncodeError(DeferredError, TypeError):
    """A send's sender or argument cannot travel as JSON (raised by the receiver, at send).

    ``argument`` names it (``"order"``, ``"items[2]"``, or ``"the sender"``),
    ``value_type`` is the type that could not be encoded.
    """

    def __init__(self, message: str, argument: str, value_type: type) -> None:
        super().__init__(message)
        self.argument = argument
        self.value_type = value_type


class DeferredDecodeError(DeferredError, ValueError):
    """The worker cannot turn a message's JSON back into values (the message is rejected)."""


class MissingInstanceError(DeferredDecodeError, LookupError):
    """A model instance a message names is not in the database (yet, or any more).

    Unlike other decoding errors it is retried, like a failure of the receiver: the
    usual cause is a send whose transaction has not committed yet (see ``on_commit``).
    """


class DeferredConfigurationError(DeferredError, RuntimeError):
    """Deferred delivery is set up in a way that cannot work; the message says how to fix it."""


class _Unencodable(Exception):
    """Internal: a value no codec takes; ``path`` is filled in on the way out."""

    def __init__(self, value: Any, reason: str | None = None) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.path: list[str] = []


class _Rejection(Exception):
    """Internal: a message the worker refuses to act on."""


# -- codecs ---------------------------------------------------------------------------


class Codec(ABC):
    """Turns values of some types into JSON and back.

    ``tag`` names the codec in messages (``{"__tocsin__": tag, "v": ...}``), so it must
    be unique and stable.  ``handles`` is asked once per type and cached.  ``decode``
    runs in the worker on data from the broker: validate it, and never import or call
    anything it names (look classes up with :func:`find_class`).
    """

    tag: str

    @abstractmethod
    def handles(self, cls: type) -> bool:
        """Whether values of exactly this type are this codec's."""

    @abstractmethod
    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        """JSON for *value*; *encode* encodes nested values.  Raise TypeError to refuse."""

    @abstractmethod
    def decode(self, data: JSON, context: DecodeContext) -> Any:
        """The value *data* stands for; raise :class:`DeferredDecodeError` if malformed."""


class DecodeContext:
    """What codecs get while one message is decoded in the worker.

    ``decode`` decodes nested data; ``resource`` gives a per-message object (a database
    session, say) that is closed once the receiver has returned.
    """

    def __init__(self, registry: CodecRegistry) -> None:
        self._registry = registry
        self._stack = ExitStack()
        self._resources: dict[Hashable, Any] = {}
        self.depth = 0

    def decode(self, data: JSON) -> Any:
        return self._registry._decode(data, self)

    def resource(
        self,
        key: Hashable,
        factory: Callable[[], Any],
        close: Callable[[Any], object] | None = None,
    ) -> Any:
        """The resource *key* for this message, made by *factory* on first use."""
        try:
            return self._resources[key]
        except KeyError:
            pass
        value = factory()
        self._resources[key] = value
        if close is not None:
            self._stack.callback(close, value)
        return value

    def close(self) -> None:
        self._resources.clear()
        self._stack.close()


class CodecRegistry:
    """The codecs, in the order they are asked; plain JSON values need none.

    Codecs registered later are asked first, so an application can take over a type a
    built-in codec handles.  The module-level :data:`codecs` is the one deferred
    receivers use.
    """

    def __init__(self, codecs: Iterable[Codec] = ()) -> None:
        self._lock = threading.Lock()
        self._codecs: list[Codec] = []
        self._by_tag: dict[str, Codec] = {}
        self._by_type: weakref.WeakKeyDictionary[type, Codec | None] = weakref.WeakKeyDictionary()
        for codec in codecs:
            self.register(codec)

    def register(self, codec: Codec, *, replace: bool = False) -> Codec:
        """Add *codec*, asked before the ones already there; returns it."""
        tag = getattr(codec, "tag", None)
        if not isinstance(codec, Codec) or not isinstance(tag, str) or not tag:
            raise TypeError(f"register() takes a Codec with a non-empty str tag, not {codec!r}.")
        with self._lock:
            old = self._by_tag.get(tag)
            if old is not None:
                if not replace:
                    raise ValueError(
                        f"A codec tagged {tag!r} is already registered ({old!r}); pass "
                        f"replace=True to replace it."
                    )
                self._codecs.remove(old)
            self._codecs.insert(0, codec)
            self._by_tag[tag] = codec
            self._by_type = weakref.WeakKeyDictionary()
        return codec

    def unregister(self, tag: str) -> Codec:
        """Remove and return the codec tagged *tag*."""
        with self._lock:
            codec = self._by_tag.pop(tag)
            self._codecs.remove(codec)
            self._by_type = weakref.WeakKeyDictionary()
        return codec

    def get(self, tag: str) -> Codec | None:
        return self._by_tag.get(tag)

    def codec_for(self, cls: type) -> Codec | None:
        """The codec that takes values of type *cls*, or None."""
        cache = self._by_type
        try:
            return cache[cls]
        except KeyError:
            pass
        except TypeError:  # not weak-referenceable: ask every time
            return self._find(cls)
        codec = self._find(cls)
        cache[cls] = codec
        return codec

    def _find(self, cls: type) -> Codec | None:
        for codec in list(self._codecs):
            try:
                if codec.handles(cls):
                    return codec
            except Exception:  # a codec that cannot tell does not take it
                logger.debug("Codec %r failed to answer for %r.", codec, cls, exc_info=True)
        return None

    # Encoding runs in the sender, on every deferred send: plain JSON goes through a
    # few type tests; only other values look a codec up.
    def encode(self, value: Any) -> JSON:
        """JSON for *value*; raises ``_Unencodable`` (with the path inside *value*)."""
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            return cast(JSON, value)
        if kind is float:
            return cast(float, value)
        if kind is list:
            items: list[JSON] = []
            for index, item in enumerate(value):
                try:
                    items.append(self.encode(item))
                except _Unencodable as error:
                    error.path.insert(0, f"[{index}]")
                    raise
            return items
        if kind is dict:
            return self._encode_dict(value)
        codec = self.codec_for(kind)
        if codec is None:
            raise _Unencodable(value)
        try:
            data = codec.encode(value, self.encode)
        except _Unencodable:
            raise
        except (TypeError, ValueError) as error:
            raise _Unencodable(value, str(error)) from error
        return {_TAG: codec.tag, "v": data}

    def _encode_dict(self, value: dict[Any, Any]) -> JSON:
        plain = True
        for key in value:
            if type(key) is not str or key == _TAG or key == "__type__":
                plain = False
                break
        if plain:
            out: dict[str, JSON] = {}
            for key, item in value.items():
                try:
                    out[key] = self.encode(item)
                except _Unencodable as error:
                    error.path.insert(0, f"[{key!r}]")
                    raise
            return out
        # Keys JSON cannot carry (or that would read as a tag) travel as pairs.
        pairs: list[JSON] = []
        for key, item in value.items():
            try:
                pairs.append([self.encode(key), self.encode(item)])
            except _Unencodable as error:
                error.path.insert(0, f"[{key!r}]")
                raise
        return {_TAG: "dict", "v": pairs}

    def _decode(self, data: Any, context: DecodeContext) -> Any:
        kind = type(data)
        if kind is str or kind is int or kind is float or kind is bool or data is None:
            return data
        context.depth += 1
        try:
            if context.depth > _MAX_DEPTH:
                raise DeferredDecodeError(f"Data nested deeper than {_MAX_DEPTH} levels.")
            if kind is list:
                return [self._decode(item, context) for item in data]
            if kind is not dict:
                raise DeferredDecodeError(f"Unexpected {kind.__name__} in a message.")
            if _TAG not in data:
                return {key: self._decode(item, context) for key, item in data.items()}
            tag = data[_TAG]
            if data.keys() != {_TAG, "v"} or type(tag) is not str:
                raise DeferredDecodeError(f"Malformed tagged value {_short(data)}.")
            if tag == "dict":
                return self._decode_pairs(data["v"], context)
            codec = self._by_tag.get(tag)
            if codec is None:
                raise DeferredDecodeError(f"No codec tagged {tag!r} in this worker.")
            return codec.decode(data["v"], context)
        finally:
            context.depth -= 1

    def _decode_pairs(self, pairs: Any, context: DecodeContext) -> dict[Any, Any]:
        if type(pairs) is not list:
            raise DeferredDecodeError("A tagged dict must hold a list of pairs.")
        out: dict[Any, Any] = {}
        for pair in pairs:
            if type(pair) is not list or len(pair) != 2:
                raise DeferredDecodeError("A tagged dict must hold a list of pairs.")
            key = self._decode(pair[0], context)
            try:
                out[key] = self._decode(pair[1], context)
            except TypeError as error:
                raise DeferredDecodeError(f"Unhashable dict key: {error}") from None
        return out


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expect(data: Any, kind: type, what: str) -> Any:
    if type(data) is not kind:
        raise DeferredDecodeError(f"{what} must be a {kind.__name__}, not {type(data).__name__}.")
    return data


def _fields(data: Any, what: str, **kinds: type) -> dict[str, Any]:
    _expect(data, dict, what)
    if data.keys() != kinds.keys():
        raise DeferredDecodeError(f"{what} must have exactly the keys {sorted(kinds)}.")
    for key, kind in kinds.items():
        if kind is not object:
            _expect(data[key], kind, f"{what}[{key!r}]")
    return cast(dict[str, Any], data)


# -- classes by path, without importing anything ----------------------------------------


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


def _class_from(data: Any, what: str) -> type:
    path = _expect(data, str, what)
    cls = find_class(path)
    if cls is None:
        raise DeferredDecodeError(
            f"{what} {path!r} is not a class of a module this worker has imported "
            f"(messages never make a worker import anything)."
        )
    return cls


# -- built-in codecs ------------------------------------------------------------------


class _ExactTypeCodec(Codec):
    cls: type

    def handles(self, cls: type) -> bool:
        return cls is self.cls


class _TupleCodec(_ExactTypeCodec):
    tag, cls = "tuple", tuple

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return _encode_items(value, encode)

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        return tuple(context.decode(x) for x in _expect(data, list, "A tuple"))


class _SetCodec(_ExactTypeCodec):
    tag = "set"
    cls: type = set

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return _encode_items(value, encode)

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        try:
            return self.cls(context.decode(x) for x in _expect(data, list, "A set"))
        except TypeError as error:
            raise DeferredDecodeError(f"Unhashable set item: {error}") from None


class _FrozenSetCodec(_SetCodec):
    tag = "frozenset"
    cls = frozenset


def _encode_items(value: Iterable[Any], encode: Callable[[Any], JSON]) -> list[JSON]:
    items: list[JSON] = []
    for index, item in enumerate(value):
        try:
            items.append(encode(item))
        except _Unencodable as error:
            error.path.insert(0, f"[{index}]")
            raise
    return items


class _BytesCodec(_ExactTypeCodec):
    tag, cls = "bytes", bytes

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return base64.b64encode(value).decode("ascii")

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        try:
            return base64.b64decode(_expect(data, str, "bytes"), validate=True)
        except ValueError as error:
            raise DeferredDecodeError(f"Bad base64 for bytes: {error}") from None


class _IsoCodec(_ExactTypeCodec):
    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return cast(str, value.isoformat())

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        try:
            return self.cls.fromisoformat(_expect(data, str, self.tag))  # type: ignore[attr-defined]
        except ValueError as error:
            raise DeferredDecodeError(f"Bad {self.tag}: {error}") from None


class _DateTimeCodec(_IsoCodec):
    tag, cls = "datetime", datetime.datetime


class _DateCodec(_IsoCodec):
    tag, cls = "date", datetime.date


class _TimeCodec(_IsoCodec):
    tag, cls = "time", datetime.time


class _TimeDeltaCodec(_ExactTypeCodec):
    tag, cls = "timedelta", datetime.timedelta

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return [value.days, value.seconds, value.microseconds]

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        parts = _expect(data, list, "A timedelta")
        if len(parts) != 3 or any(type(p) is not int for p in parts):
            raise DeferredDecodeError("A timedelta is [days, seconds, microseconds].")
        try:
            return datetime.timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2])
        except OverflowError as error:
            raise DeferredDecodeError(f"Bad timedelta: {error}") from None


class _DecimalCodec(_ExactTypeCodec):
    tag, cls = "decimal", decimal.Decimal

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return str(value)

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        text = _expect(data, str, "A decimal")
        if len(text) > 1000:
            raise DeferredDecodeError("A decimal of more than 1000 characters.")
        try:
            return decimal.Decimal(text)
        except decimal.InvalidOperation:
            raise DeferredDecodeError(f"Bad decimal {_short(text)}.") from None


class _UUIDCodec(_ExactTypeCodec):
    tag, cls = "uuid", uuid.UUID

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return str(value)

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        try:
            return uuid.UUID(_expect(data, str, "A UUID"))
        except ValueError:
            raise DeferredDecodeError(f"Bad UUID {_short(data)}.") from None


class _EnumCodec(Codec):
    tag = "enum"

    def handles(self, cls: type) -> bool:
        return issubclass(cls, enum.Enum)

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return {"cls": class_path(type(value)), "value": encode(value.value)}

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        fields = _fields(data, "An enum", cls=str, value=object)
        cls = _class_from(fields["cls"], "Enum class")
        if not issubclass(cls, enum.Enum):
            raise DeferredDecodeError(f"{fields['cls']!r} is not an Enum.")
        try:
            return cls(context.decode(fields["value"]))
        except ValueError as error:
            raise DeferredDecodeError(str(error)) from None


class _ClassCodec(Codec):
    """Classes (the usual senders) travel by ``module:qualname``."""

    tag = "class"

    def handles(self, cls: type) -> bool:
        return issubclass(cls, type)

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return class_path(value)

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        return _class_from(data, "Class")


class SQLAlchemyCodec(Codec):
    """SQLAlchemy mapped instances travel as class path and primary key.

    The worker loads them again with ``session.get()`` in a session from the factory
    given to :func:`set_session_factory` (one session per message, closed after the
    receiver returns: commit it yourself, ``sqlalchemy.orm.object_session(instance)``,
    if the receiver changes what it loaded).  An instance must have its primary key
    when sent: flush a new one first.
    """

    tag = "sqlalchemy"

    def __init__(self) -> None:
        self._factories: dict[type | None, Callable[[], Any]] = {}

    def set_session_factory(
        self, factory: Callable[[], Any] | None, base: type | None = None
    ) -> Callable[[], Any] | None:
        """Use *factory* to load instances of *base* (of any class when None); returns the
        factory it replaces.  None removes it."""
        old = self._factories.pop(base, None)
        if factory is not None:
            if not callable(factory):
                raise TypeError(f"A session factory must be callable, not {factory!r}.")
            self._factories[base] = factory
        return old

    def factory_for(self, cls: type) -> Callable[[], Any] | None:
        for klass in cls.__mro__:
            factory = self._factories.get(klass)
            if factory is not None:
                return factory
        return self._factories.get(None)

    def handles(self, cls: type) -> bool:
        if "sqlalchemy.orm" not in sys.modules:
            return False
        from sqlalchemy import inspect as sa_inspect
        from sqlalchemy.orm import Mapper

        return isinstance(sa_inspect(cls, raiseerr=False), Mapper)

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        from sqlalchemy import inspect as sa_inspect

        state = sa_inspect(value)
        identity = state.identity
        if identity is None and state.pending:
            # Inside a flush (post_save from an after_insert hook): the key is not
            # registered yet, but the primary key columns are set.
            identity = tuple(state.mapper.primary_key_from_instance(value))
        if identity is None or any(part is None for part in identity):
            raise TypeError(
                f"{type(value).__name__} instance has no primary key yet (it is not "
                f"flushed): flush the session before sending"
            )
        return {"cls": class_path(type(value)), "pk": [encode(part) for part in identity]}

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        from sqlalchemy import inspect as sa_inspect
        from sqlalchemy.orm import Mapper

        fields = _fields(data, "A SQLAlchemy instance", cls=str, pk=list)
        cls = _class_from(fields["cls"], "Mapped class")
        if not isinstance(sa_inspect(cls, raiseerr=False), Mapper):
            raise DeferredDecodeError(f"{fields['cls']!r} is not a mapped class.")
        factory = self.factory_for(cls)
        if factory is None:
            raise DeferredDecodeError(
                f"No SQLAlchemy session factory to load {cls.__qualname__} with: call "
                f"tocsin.contrib.celery.set_session_factory(sessionmaker(engine)) in the "
                f"worker's app module."
            )
        session = context.resource(("sqlalchemy", id(factory)), factory, _close_session)
        key = tuple(context.decode(part) for part in fields["pk"])
        try:
            instance = session.get(cls, key[0] if len(key) == 1 else key)
        except Exception as error:
            raise MissingInstanceError(
                f"Could not load {cls.__qualname__} {key!r}: {error}"
            ) from error
        if instance is None:
            raise MissingInstanceError(f"No {cls.__qualname__} with primary key {key!r}.")
        return instance


def _close_session(session: Any) -> None:
    session.close()


class DjangoModelCodec(Codec):
    """Django model instances travel as ``app_label.Model``, primary key and alias.

    The worker loads them again through Django's app registry (only installed models
    can be named) with the model's base manager.  The worker must configure Django.
    """

    tag = "django"

    def handles(self, cls: type) -> bool:
        models = sys.modules.get("django.db.models")
        return models is not None and issubclass(cls, models.Model)

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        if value.pk is None:
            raise TypeError(f"{type(value).__name__} instance is not saved (its pk is None)")
        return {"model": value._meta.label, "pk": encode(value.pk), "db": value._state.db}

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        fields = _fields(data, "A Django instance", model=str, pk=object, db=object)
        from django.apps import apps  # type: ignore[import-untyped, import-not-found, unused-ignore]
        from django.db import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
            connections,
        )

        try:
            model = apps.get_model(fields["model"])
        except (LookupError, ValueError) as error:
            raise DeferredDecodeError(f"No installed model {fields['model']!r}: {error}") from None
        manager = model._base_manager
        alias = fields["db"]
        if isinstance(alias, str) and alias in connections.databases:
            manager = manager.db_manager(alias)
        pk = context.decode(fields["pk"])
        try:
            return manager.get(pk=pk)
        except model.DoesNotExist:
            raise MissingInstanceError(f"No {fields['model']} with pk {pk!r}.") from None


#: The codecs every deferred receiver uses.  Add yours with :func:`register_codec`.
codecs = CodecRegistry(
    [
        _TupleCodec(),
        _SetCodec(),
        _FrozenSetCodec(),
        _BytesCodec(),
        _DateCodec(),
        _DateTimeCodec(),
        _TimeCodec(),
        _TimeDeltaCodec(),
        _DecimalCodec(),
        _UUIDCodec(),
        _ClassCodec(),
        _EnumCodec(),
        DjangoModelCodec(),
        SQLAlchemyCodec(),
    ]
)


def register_codec(codec: Codec, *, replace: bool = False) -> Codec:
    """Register *codec* with :data:`codecs` (asked before the built-in ones)."""
    return codecs.register(codec, replace=replace)


def set_session_factory(
    factory: Callable[[], Any] | None, base: type | None = None
) -> Callable[[], Any] | None:
    """Tell the worker how to open a SQLAlchemy session to load instances with.

    ``set_session_factory(sessionmaker(engine))`` in the worker's app module; with
    *base*, only for subclasses of that declarative base (several databases).
    Returns the factory it replaces (None removes the factory).
    """
    codec = codecs.get(SQLAlchemyCodec.tag)
    if not isinstance(codec, SQLAlchemyCodec):
        raise DeferredConfigurationError("The SQLAlchemy codec was unregistered.")
    return codec.set_session_factory(factory, base)


# -- retries --------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """When and how soon a failed deferred receiver is tried again (Celery's names).

    A failure whose exception is an instance of ``autoretry_for`` (and not of
    ``dont_autoretry_for``) is retried while fewer than ``max_retries`` retries were
    made (None: forever).  Retry *n* (from 0) waits ``retry_backoff * 2**n`` seconds,
    at most ``retry_backoff_max``; with ``retry_jitter``, a random time up to that
    (full jitter).  ``retry_backoff=False`` waits ``retry_delay`` every time.
    """

    autoretry_for: tuple[type[BaseException], ...] = (Exception,)
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    max_retries: int | None = 3
    retry_backoff: bool | float = True
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    retry_delay: float = 180.0

    def __post_init__(self) -> None:
        for name in ("autoretry_for", "dont_autoretry_for"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(
                isinstance(c, type) and issubclass(c, BaseException) for c in value
            ):
                raise TypeError(f"{name} must be a tuple of exception classes, not {value!r}.")
        if self.max_retries is not None and (
            type(self.max_retries) is not int or self.max_retries < 0
        ):
            raise ValueError(f"max_retries must be None or an int >= 0, not {self.max_retries!r}.")
        for name in ("retry_backoff_max", "retry_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative.")
        if not isinstance(self.retry_backoff, bool) and self.retry_backoff < 0:
            raise ValueError("retry_backoff must not be negative.")

    def should_retry(self, error: BaseException, retries: int) -> bool:
        """Whether a failure with *error*, after *retries* retries, is retried."""
        if not isinstance(error, self.autoretry_for) or isinstance(error, self.dont_autoretry_for):
            return False
        return self.max_retries is None or retries < self.max_retries

    def countdown(self, retries: int) -> float:
        """Seconds to wait before retry number *retries* (0 for the first retry)."""
        if self.retry_backoff is False:
            return float(self.retry_delay)
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        delay = min(self.retry_backoff_max, factor * 2.0 ** min(retries, 64))
        if self.retry_jitter:
            delay = random.uniform(0.0, delay)
        return max(0.0, delay)


# -- the sending side: deferred receivers -----------------------------------------------


_registry_lock = threading.Lock()
_by_identity: dict[str, weakref.WeakSet[DeferredReceiver]] = {}


class DeferredReceiver:
    """A receiver that enqueues a Celery task instead of running its function.

    Made by :func:`deferred`; connect it like any receiver.  Calling it (as a send
    does) returns the task's ``AsyncResult``.  ``func`` is the wrapped function,
    ``identity`` the name messages use for it, ``retry_policy`` its
    :class:`RetryPolicy`.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        app: Any = None,
        name: str | None = None,
        retry_policy: RetryPolicy | None = None,
        on_commit: OnCommit = False,
        session: Any = None,
        queue: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        _check_deferrable(func)
        if on_commit not in (True, False, "sqlalchemy", "django"):
            raise ValueError(
                f"on_commit must be True, False, 'sqlalchemy' or 'django', not {on_commit!r}."
            )
        if session is not None and on_commit not in (True, "sqlalchemy"):
            raise ValueError("session= is only used with on_commit=True or 'sqlalchemy'.")
        functools.update_wrapper(self, func, updated=())
        self.func = func
        self.identity = name if name is not None else f"{func.__module__}:{func.__qualname__}"
        if not isinstance(self.identity, str) or not self.identity:
            raise TypeError(f"name must be a non-empty str, not {name!r}.")
        self.app = app
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.on_commit = on_commit
        self.session = session
        self.is_async = inspect.iscoroutinefunction(func)
        publish = dict(options or {})
        if queue is not None:
            publish["queue"] = queue
        for reserved in ("task_id", "args", "kwargs", "serializer", "argsrepr"):
            if reserved in publish:
                raise ValueError(f"options may not set {reserved!r}; tocsin sets it.")
        publish.setdefault("shadow", f"{TASK_NAME}:{self.identity}")
        self.options: Mapping[str, Any] = types.MappingProxyType(publish)
        self._signals: weakref.WeakSet[Signal] = weakref.WeakSet()
        self._marks: list[ReceiverMark] = []
        self._task: tuple[Any, Any] | None = None
        with _registry_lock:
            _by_identity.setdefault(self.identity, weakref.WeakSet()).add(self)

    def __repr__(self) -> str:
        return f"<DeferredReceiver {self.identity}>"

    # @receiver sets this attribute on what it decorates; the plugin manager reads it.
    # Setting it is how a deferred receiver learns the signals it will be found under.
    @property
    def __tocsin_receivers__(self) -> list[ReceiverMark]:
        return list(self._marks)

    @__tocsin_receivers__.setter
    def __tocsin_receivers__(self, marks: Iterable[ReceiverMark]) -> None:
        marks = list(marks)
        for mark in marks:
            self.bind(mark.signal)
        self._marks = marks

    def bind(self, signal: Signal) -> None:
        """Let workers find this receiver under *signal*'s name.

        ``@receiver`` and :func:`connect_deferred` do it; call it yourself only after
        connecting with a bare ``signal.connect(proxy)``.
        """
        if not isinstance(signal, Signal):
            raise TypeError(f"bind() takes a Signal, not {signal!r}.")
        if not signal.name:
            raise DeferredConfigurationError(
                f"{signal!r} has no name, so a worker could not tell which signal a "
                f"message for {self.identity} is about; give it one: "
                f"Signal(..., name='app.something_happened')."
            )
        self._signals.add(signal)

    @property
    def signals(self) -> list[Signal]:
        """The signals workers may find this receiver under (connected or not)."""
        return list(self._signals)

    def __call__(self, *, signal: Signal, sender: Any, **named: Any) -> Any:
        if signal not in self._signals:
            raise DeferredConfigurationError(
                f"Deferred receiver {self.identity} was connected to {signal!r} without "
                f"@receiver or connect_deferred(), so no worker would find it under that "
                f"signal; connect it with one of those, or call .bind(signal) once."
            )
        envelope = self.envelope(signal, sender, named)
        app, task = self._resolve_task()
        if self.on_commit:
            schedule = self._transaction(sender, named)
            if schedule is not None:
                task_id = str(uuid.uuid4())
                schedule(functools.partial(self._publish_later, task, envelope, task_id))
                return app.AsyncResult(task_id)
        return task.apply_async((envelope,), argsrepr=_argsrepr(envelope), **self.options)

    def envelope(self, signal: Signal, sender: Any, named: Mapping[str, Any]) -> dict[str, JSON]:
        """The JSON message for one send; :class:`DeferredEncodeError` if it cannot be made."""
        encode = codecs.encode
        try:
            encoded_sender = encode(sender)
        except _Unencodable as error:
            raise self._encode_error(signal, "the sender", error) from None
        encoded: dict[str, JSON] = {}
        for key, value in named.items():
            if key in RESERVED_ARGUMENTS:
                raise DeferredEncodeError(
                    f"Cannot defer {self.identity} for {signal!r}: argument {key!r} is "
                    f"reserved for the worker's call (tocsin_message_id, tocsin_attempt).",
                    key,
                    type(value),
                )
            try:
                encoded[key] = encode(value)
            except _Unencodable as error:
                raise self._encode_error(signal, key, error) from None
        return {
            "tocsin": _VERSION,
            "signal": cast(str, signal.name),
            "receiver": self.identity,
            "sender": encoded_sender,
            "named": encoded,
        }

    def _encode_error(
        self, signal: Signal, argument: str, error: _Unencodable
    ) -> DeferredEncodeError:
        path = argument + "".join(error.path)
        what = path if argument == "the sender" else f"argument {path!r}"
        kind = type(error.value)
        reason = error.reason or (
            f"no codec takes {kind.__module__}.{kind.__qualname__} values; register one "
            f"with tocsin.contrib.celery.register_codec()"
        )
        return DeferredEncodeError(
            f"Cannot defer {self.identity} for {signal!r}: {what} (a {kind.__qualname__}) "
            f"cannot travel as JSON: {reason}.",
            path,
            kind,
        )

    def _resolve_task(self) -> tuple[Any, Any]:
        app = self.app if self.app is not None else current_app._get_current_object()
        cached = self._task
        if cached is not None and cached[0] is app:
            return cached
        cached = (app, install(app))
        self._task = cached
        return cached

    def _publish_later(self, task: Any, envelope: dict[str, JSON], task_id: str) -> None:
        try:
            task.apply_async(
                (envelope,), task_id=task_id, argsrepr=_argsrepr(envelope), **self.options
            )
        except Exception:
            logger.exception(
                "Could not enqueue deferred receiver %s for signal %r after the transaction "
                "committed (message %s); the delivery is lost. Message: %s",
                self.identity,
                envelope["signal"],
                task_id,
                _dump(envelope),
            )

    def _transaction(
        self, sender: Any, named: Mapping[str, Any]
    ) -> Callable[[Callable[[], None]], None] | None:
        """How to run a callback once the sender's transaction commits; None: now."""
        mode = self.on_commit
        if mode is True or mode == "sqlalchemy":
            session = self._session(sender, named)
            if session is not None:
                return functools.partial(_after_sqlalchemy_commit, session)
            if mode == "sqlalchemy":
                raise DeferredConfigurationError(
                    f"{self.identity} defers to the SQLAlchemy commit, but the send carries "
                    f"no instance in a session: pass session= to deferred()."
                )
        alias = _django_alias(sender, named)
        if alias is not None:
            return functools.partial(_after_django_commit, alias)
        if mode == "django":
            raise DeferredConfigurationError(
                f"{self.identity} defers to the Django commit, but Django is not configured."
            )
        return None

    def _session(self, sender: Any, named: Mapping[str, Any]) -> Any:
        given = self.session
        if given is not None:
            from sqlalchemy.orm import Session

            return given if isinstance(given, Session) else given()
        if "sqlalchemy.orm" not in sys.modules:
            return None
        from sqlalchemy.orm import object_session

        sqlalchemy_codec = codecs.get(SQLAlchemyCodec.tag)
        for value in (sender, *named.values()):
            if sqlalchemy_codec is not None and codecs.codec_for(type(value)) is sqlalchemy_codec:
                session = object_session(value)
                if session is not None:
                    return session
        return None


def _check_deferrable(func: Any) -> None:
    if isinstance(func, DeferredReceiver):
        raise TypeError(f"{func!r} is already deferred.")
    if not callable(func):
        raise TypeError(f"deferred() takes a function, not {func!r}.")
    if not isinstance(func, types.FunctionType):
        raise TypeError(
            f"deferred() takes a plain function (a worker finds it by module and name), "
            f"not {type(func).__name__} {func!r}."
        )
    if getattr(func, "__tocsin_receivers__", None):
        raise TypeError(
            f"{func.__qualname__} is already connected by @receiver, in this process: "
            f"put @deferred(...) below @receiver(...), next to the function."
        )
    owner = func.__qualname__.rpartition(".")[0]
    if owner and not owner.endswith("<locals>"):
        raise TypeError(
            f"deferred() cannot wrap the method {func.__qualname__}: a worker could not "
            f"rebuild its instance. Defer a module-level function instead."
        )


@overload
def deferred(
    func: Callable[..., Any],
    *,
    app: Any = None,
    name: str | None = None,
    on_commit: OnCommit = False,
    session: Any = None,
    autoretry_for: tuple[type[BaseException], ...] = (Exception,),
    dont_autoretry_for: tuple[type[BaseException], ...] = (),
    max_retries: int | None = 3,
    retry_backoff: bool | float = True,
    retry_backoff_max: float = 600.0,
    retry_jitter: bool = True,
    retry_delay: float = 180.0,
    queue: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> DeferredReceiver: ...


@overload
def deferred(
    func: None = None,
    *,
    app: Any = None,
    name: str | None = None,
    on_commit: OnCommit = False,
    session: Any = None,
    autoretry_for: tuple[type[BaseException], ...] = (Exception,),
    dont_autoretry_for: tuple[type[BaseException], ...] = (),
    max_retries: int | None = 3,
    retry_backoff: bool | float = True,
    retry_backoff_max: float = 600.0,
    retry_jitter: bool = True,
    retry_delay: float = 180.0,
    queue: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], DeferredReceiver]: ...


def deferred(
    func: Callable[..., Any] | None = None,
    *,
    app: Any = None,
    name: str | None = None,
    on_commit: OnCommit = False,
    session: Any = None,
    autoretry_for: tuple[type[BaseException], ...] = (Exception,),
    dont_autoretry_for: tuple[type[BaseException], ...] = (),
    max_retries: int | None = 3,
    retry_backoff: bool | float = True,
    retry_backoff_max: float = 600.0,
    retry_jitter: bool = True,
    retry_delay: float = 180.0,
    queue: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> DeferredReceiver | Callable[[Callable[..., Any]], DeferredReceiver]:
    """Make *func* a receiver that runs in a Celery worker; use as ``@deferred(...)``.

    Put it below ``@receiver(...)``.  ``app``: the Celery app (default: Celery's
    current app when a send happens).  ``name``: the identity messages use (default
    ``"module:qualname"``).  ``on_commit``: enqueue only once the sender's transaction
    commits, and never if it rolls back — ``True`` finds the SQLAlchemy session of a
    mapped instance among the sender and arguments (or uses ``session=``: a session,
    a ``scoped_session`` or a callable returning one), else uses Django's
    ``transaction.on_commit`` if Django is configured, else enqueues at once;
    ``"sqlalchemy"`` and ``"django"`` insist on one.  The retry options are
    :class:`RetryPolicy`'s.  ``queue`` and ``options`` go to ``apply_async``.
    """
    policy = RetryPolicy(
        autoretry_for=autoretry_for,
        dont_autoretry_for=dont_autoretry_for,
        max_retries=max_retries,
        retry_backoff=retry_backoff,
        retry_backoff_max=retry_backoff_max,
        retry_jitter=retry_jitter,
        retry_delay=retry_delay,
    )

    def wrap(target: Callable[..., Any]) -> DeferredReceiver:
        return DeferredReceiver(
            target,
            app=app,
            name=name,
            retry_policy=policy,
            on_commit=on_commit,
            session=session,
            queue=queue,
            options=options,
        )

    return wrap if func is None else wrap(func)


def connect_deferred(
    signal: Signal,
    func: Callable[..., Any] | DeferredReceiver,
    sender: Any = None,
    weak: bool = False,
    dispatch_uid: Hashable | None = None,
    *,
    priority: int = 0,
    **options: Any,
) -> DeferredReceiver:
    """Connect *func* to *signal* as a deferred receiver; returns the proxy connected.

    *func* is a function (wrapped with ``deferred(func, **options)``) or a proxy
    :func:`deferred` made.  ``weak`` defaults to False here, unlike
    ``Signal.connect``: nothing else may hold the proxy made for you; disconnect it
    with ``signal.disconnect(proxy)``.
    """
    if isinstance(func, DeferredReceiver):
        if options:
            raise TypeError("Options go to deferred(); this receiver is already deferred.")
        proxy = func
    else:
        proxy = deferred(func, **options)
    proxy.bind(signal)
    signal.connect(proxy, sender, weak, dispatch_uid, priority=priority)
    return proxy


def _argsrepr(envelope: dict[str, Any]) -> str:
    # What Celery shows for the task's arguments in logs, events and monitors: names,
    # not values (those may be personal data), and cheaper than Celery's saferepr of
    # the whole envelope, which would be most of what a deferred send costs over delay().
    named = ", ".join(envelope["named"])
    return f"({envelope['signal']!r} -> {envelope['receiver']!r}: {named})"


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True)[:4000]
    except (TypeError, ValueError):
        return _short(value, 4000)


# -- transactions ---------------------------------------------------------------------

_PENDING = "tocsin.contrib.celery:pending"


def _after_sqlalchemy_commit(session: Any, callback: Callable[[], None]) -> None:
    """Run *callback* when *session*'s outermost transaction commits; drop it on rollback.

    Sent inside a savepoint, it is dropped if that savepoint (or anything around it)
    rolls back.  Not in a transaction: now.
    """
    if not session.in_transaction():
        callback()
        return
    pending = session.info.get(_PENDING)
    if pending is None:
        from sqlalchemy import event

        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _sa_after_commit)
        event.listen(session, "after_soft_rollback", _sa_after_soft_rollback)
        event.listen(session, "after_transaction_end", _sa_after_transaction_end)
    transaction = session.get_nested_transaction() or session.get_transaction()
    pending.append((transaction, callback))


def _sa_after_commit(session: Any) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint was released; the outer transaction may still roll back
    pending = session.info.get(_PENDING)
    if not pending:
        return
    ready = [callback for _, callback in pending]
    pending.clear()
    for callback in ready:
        callback()


def _sa_after_soft_rollback(session: Any, previous_transaction: Any) -> None:
    pending = session.info.get(_PENDING)
    if pending:
        kept = [(t, cb) for t, cb in pending if not _within(t, previous_transaction)]
        if len(kept) != len(pending):
            logger.debug("Dropped %d deferred deliveries: rolled back.", len(pending) - len(kept))
        pending[:] = kept


def _sa_after_transaction_end(session: Any, transaction: Any) -> None:
    if transaction.parent is None:
        pending = session.info.get(_PENDING)
        if pending:  # closed without committing
            logger.debug("Dropped %d deferred deliveries: transaction closed.", len(pending))
            pending.clear()


def _within(transaction: Any, ancestor: Any) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def _django_alias(sender: Any, named: Mapping[str, Any]) -> str | None:
    """The database alias to wait for: a Django instance's, or the default one."""
    conf = sys.modules.get("django.conf")
    if conf is None or not conf.settings.configured:
        return None
    django_codec = codecs.get(DjangoModelCodec.tag)
    for value in (sender, *named.values()):
        if django_codec is not None and codecs.codec_for(type(value)) is django_codec:
            return cast(str, value._state.db or "default")
    from django.db import DEFAULT_DB_ALIAS  # type: ignore[import-untyped, import-not-found, unused-ignore]

    alias: str = DEFAULT_DB_ALIAS
    return alias


def _after_django_commit(alias: str, callback: Callable[[], None]) -> None:
    from django.db import transaction  # type: ignore[import-untyped, import-not-found, unused-ignore]

    transaction.on_commit(callback, using=alias)


# -- the worker side ------------------------------------------------------------------


@dataclass
class _Install:
    task: Any
    plugins: PluginManager | None


_install_lock = threading.RLock()
_installs: weakref.WeakKeyDictionary[Any, _Install] = weakref.WeakKeyDictionary()
_plugins_lock = threading.Lock()
_plugins_loaded: dict[int, int] = {}  # id(manager) -> pid that loaded it
_worker_hook_connected = False


def install(app: Any, *, plugins: PluginManager | bool = True) -> Any:
    """Register the ``tocsin.deliver`` task on the Celery *app* (once) and return it.

    Call it in the worker's app module.  ``plugins``: the plugin manager the worker
    loads once per process (True: ``tocsin.plugins``; False: none, when the app module
    connects every deferred receiver itself).  Raises
    :class:`DeferredConfigurationError` if the app accepts pickle or YAML messages.
    Deferred receivers install themselves on the app they send with, so the sending
    side needs no call.
    """
    with _install_lock:
        record = _installs.get(app)
        if record is not None:
            return record.task
        _check_content(app)
        manager: PluginManager | None
        if plugins is True:
            import tocsin

            manager = tocsin.plugins
        elif plugins is False:
            manager = None
        else:
            manager = plugins
        task = app.task(
            name=TASK_NAME,
            bind=True,
            shared=False,
            serializer="json",
            acks_late=True,
            reject_on_worker_lost=True,
            max_retries=None,
            typing=False,
        )(_deliver)
        _installs[app] = _Install(task, manager)
        _connect_worker_hook()
    return task


def _check_content(app: Any) -> None:
    conf = app.conf
    for setting in ("accept_content", "result_accept_content"):
        accepted = conf.get(setting)
        if accepted is None:
            continue
        if isinstance(accepted, str):
            accepted = [accepted]
        unsafe = sorted({str(c).lower() for c in accepted} & UNSAFE_CONTENT)
        if unsafe:
            raise DeferredConfigurationError(
                f"Celery app {app.main!r} has {setting}={list(accepted)!r}, which admits "
                f"{', '.join(unsafe)}: a message from the broker could then run code in the "
                f"worker. tocsin's deferred receivers only work with apps that accept JSON "
                f"(Celery's default: accept_content=['json'])."
            )


def _connect_worker_hook() -> None:
    global _worker_hook_connected
    if not _worker_hook_connected:
        worker_process_init.connect(_on_worker_process_init, weak=False)
        _worker_hook_connected = True


def _on_worker_process_init(**kwargs: Any) -> None:
    with _install_lock:
        managers = {id(r.plugins): r.plugins for r in _installs.values() if r.plugins is not None}
    for manager in managers.values():
        _load_plugins(manager)


def _load_plugins(manager: PluginManager) -> None:
    """``manager.load()`` once per process (a forked child loads again: new plugins only)."""
    pid = os.getpid()
    if _plugins_loaded.get(id(manager)) == pid:
        return
    with _plugins_lock:
        if _plugins_loaded.get(id(manager)) == pid:
            return
        try:
            enabled = manager.load()
        except Exception:
            logger.exception("Loading tocsin plugins in worker process %d failed.", pid)
        else:
            logger.info("Worker process %d: tocsin plugins enabled: %s.", pid, enabled or "none")
        _plugins_loaded[id(manager)] = pid


class _Message:
    __slots__ = ("named", "receiver", "sender", "signal")

    def __init__(self, envelope: Any) -> None:
        if type(envelope) is not dict or envelope.keys() != _ENVELOPE_KEYS:
            raise _Rejection(f"not a tocsin message: {_short(envelope)}")
        if envelope["tocsin"] != _VERSION:
            raise _Rejection(f"unknown message version {envelope['tocsin']!r}")
        signal, receiver, named = envelope["signal"], envelope["receiver"], envelope["named"]
        if type(signal) is not str or type(receiver) is not str or type(named) is not dict:
            raise _Rejection(f"malformed tocsin message: {_short(envelope)}")
        for key in named:
            if type(key) is not str or not key.isidentifier() or key in RESERVED_ARGUMENTS:
                raise _Rejection(f"bad argument name {_short(key)}")
        self.signal: str = signal
        self.receiver: str = receiver
        self.sender: JSON = envelope["sender"]
        self.named: dict[str, JSON] = named


def resolve(signal_name: str, identity: str) -> tuple[DeferredReceiver, Signal] | None:
    """The deferred receiver *identity* connected here to the signal named *signal_name*.

    Only live deferred receivers are considered, and only while connected to a signal
    of that name: nothing is imported.  None if there is none, or more than one.
    """
    with _registry_lock:
        candidates = list(_by_identity.get(identity, ()))
    found: list[tuple[DeferredReceiver, Signal]] = []
    for proxy in candidates:
        for signal in proxy.signals:
            if signal.name == signal_name and any(r is proxy for r in signal.receivers):
                found.append((proxy, signal))
    return found[0] if len(found) == 1 else None


def _deliver(task: Any, envelope: Any) -> JSON:
    """The ``tocsin.deliver`` task: check, resolve, decode, call; retry on failure."""
    request = task.request
    message_id = cast(str, request.id)
    record = _installs.get(task.app)
    if not request.is_eager and record is not None and record.plugins is not None:
        _load_plugins(record.plugins)
    try:
        message = _Message(envelope)
        found = resolve(message.signal, message.receiver)
        if found is None:
            raise _Rejection(
                f"no deferred receiver {message.receiver!r} is connected to a signal named "
                f"{message.signal!r} in this worker"
            )
    except _Rejection as error:
        logger.error("Rejected tocsin message %s: %s.", message_id, error)
        raise Reject(str(error), requeue=False) from None
    proxy, signal = found
    context = DecodeContext(codecs)
    try:
        try:
            sender = context.decode(message.sender)
            named = {key: context.decode(value) for key, value in message.named.items()}
        except MissingInstanceError:
            raise
        except (DeferredDecodeError, RecursionError) as error:
            logger.error(
                "Rejected tocsin message %s for %s (signal %r): %s",
                message_id,
                proxy.identity,
                message.signal,
                error,
            )
            raise Reject(str(error), requeue=False) from None
        result = proxy.func(
            signal=signal,
            sender=sender,
            tocsin_message_id=message_id,
            tocsin_attempt=request.retries,
            **named,
        )
        if proxy.is_async:
            result = asyncio.run(result)
    except Reject:
        raise
    except Exception as error:
        retry = _retry(task, proxy, message, error)
        if retry is None:
            raise
        raise retry from error
    finally:
        context.close()
    return _plain(result)


def _retry(task: Any, proxy: DeferredReceiver, message: _Message, error: Exception) -> Any:
    """Celery's ``Retry`` for *error* if the receiver's policy retries it; else log the
    final failure and return None."""
    request = task.request
    retries = int(request.retries or 0)
    policy = proxy.retry_policy
    if policy.should_retry(error, retries):
        countdown = policy.countdown(retries)
        logger.warning(
            "Deferred receiver %s (signal %r, message %s) failed on attempt %d: %r; "
            "retrying in %.2fs.",
            proxy.identity,
            message.signal,
            request.id,
            retries + 1,
            error,
            countdown,
        )
        # Re-sends the message (same id, retries + 1) after countdown; raises Reject
        # if that cannot be published.
        return task.retry(exc=error, countdown=countdown, throw=False)
    logger.error(
        "Deferred receiver %s gave up after %d attempt(s): signal %r, message %s, "
        "sender %s, arguments %s: %s: %s",
        proxy.identity,
        retries + 1,
        message.signal,
        request.id,
        _dump(message.sender),
        _dump(message.named),
        type(error).__name__,
        error,
        exc_info=error,
    )
    return None


def _plain(value: Any, depth: int = 0) -> JSON:
    """*value* if it is plain JSON (for the result backend), else None."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return cast(JSON, value)
    if depth > _MAX_DEPTH:
        return None
    if kind is list and all(_plain(v, depth + 1) is v for v in value):
        return cast(JSON, value)
    if (
        kind is dict
        and all(type(k) is str for k in value)
        and all(_plain(v, depth + 1) is v for v in value.values())
    ):
        return cast(JSON, value)
    return None
