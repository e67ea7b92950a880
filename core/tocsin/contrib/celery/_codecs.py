"""Codecs: how values JSON has no type for travel, as ``{"__tocsin__": tag, "v": ...}``.
:class:`Codec` is what one codec implements, :class:`CodecRegistry` encodes a send's
values with the codecs it holds (in the sender) and decodes them again (in the worker,
with a :class:`DecodeContext` per message)."""

from __future__ import annotations

import json
import logging
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable
from contextlib import ExitStack
from typing import Any, TypeAlias, cast

from tocsin._errors import DeferredDecodeError

#: The logger of the whole package, under the name users configure.
logger = logging.getLogger("tocsin.contrib.celery")

#: The key that marks a value a codec encoded: ``{"__tocsin__": tag, "v": data}``.
_TAG = "__tocsin__"
#: How deeply a message's data may nest before the worker refuses to decode it.
MAX_DEPTH = 64

#: A value JSON can carry, as the codecs produce and consume it.
JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"


class Unencodable(Exception):
    """Internal: a value no codec takes; ``path`` is filled in on the way out."""

    def __init__(self, value: Any, reason: str | None = None) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.path: list[str] = []


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
        """JSON for *value*; raises ``Unencodable`` (with the path inside *value*)."""
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
                except Unencodable as error:
                    error.path.insert(0, f"[{index}]")
                    raise
            return items
        if kind is dict:
            return self._encode_dict(value)
        codec = self.codec_for(kind)
        if codec is None:
            raise Unencodable(value)
        try:
            data = codec.encode(value, self.encode)
        except Unencodable:
            raise
        except (TypeError, ValueError) as error:
            raise Unencodable(value, str(error)) from error
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
                except Unencodable as error:
                    error.path.insert(0, f"[{key!r}]")
                    raise
            return out
        # Keys JSON cannot carry (or that would read as a tag) travel as pairs.
        pairs: list[JSON] = []
        for key, item in value.items():
            try:
                pairs.append([self.encode(key), self.encode(item)])
            except Unencodable as error:
                error.path.insert(0, f"[{key!r}]")
                raise
        return {_TAG: "dict", "v": pairs}

    def _decode(self, data: Any, context: DecodeContext) -> Any:
        kind = type(data)
        if kind is str or kind is int or kind is float or kind is bool or data is None:
            return data
        context.depth += 1
        try:
            if context.depth > MAX_DEPTH:
                raise DeferredDecodeError(f"Data nested deeper than {MAX_DEPTH} levels.")
            if kind is list:
                return [self._decode(item, context) for item in data]
            if kind is not dict:
                raise DeferredDecodeError(f"Unexpected {kind.__name__} in a message.")
            if _TAG not in data:
                return {key: self._decode(item, context) for key, item in data.items()}
            tag = data[_TAG]
            if data.keys() != {_TAG, "v"} or type(tag) is not str:
                raise DeferredDecodeError(f"Malformed tagged value {shorten(data)}.")
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


def shorten(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def expect(data: Any, kind: type, what: str) -> Any:
    if type(data) is not kind:
        raise DeferredDecodeError(f"{what} must be a {kind.__name__}, not {type(data).__name__}.")
    return data


def fields_of(data: Any, what: str, **kinds: type) -> dict[str, Any]:
    expect(data, dict, what)
    if data.keys() != kinds.keys():
        raise DeferredDecodeError(f"{what} must have exactly the keys {sorted(kinds)}.")
    for key, kind in kinds.items():
        if kind is not object:
            expect(data[key], kind, f"{what}[{key!r}]")
    return cast(dict[str, Any], data)


def dump_json(value: Any) -> str:
    """*value* as JSON for a log line (its repr if it is not JSON), at most 4000 characters."""
    try:
        return json.dumps(value, sort_keys=True)[:4000]
    except (TypeError, ValueError):
        return shorten(value, 4000)
