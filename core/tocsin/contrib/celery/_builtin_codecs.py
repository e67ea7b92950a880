"""The built-in codecs of values from Python itself: tuples, sets, bytes, dates and
times, decimals, UUIDs, enums and classes."""

from __future__ import annotations

import base64
import datetime
import decimal
import enum
import uuid
from collections.abc import Callable, Iterable
from typing import Any, cast

from tocsin._errors import DeferredDecodeError
from tocsin.contrib.celery._classes import class_from, class_path
from tocsin.contrib.celery._codecs import (
    JSON,
    Codec,
    DecodeContext,
    Unencodable,
    expect,
    fields_of,
    shorten,
)


class _ExactTypeCodec(Codec):
    cls: type

    def handles(self, cls: type) -> bool:
        return cls is self.cls


class _TupleCodec(_ExactTypeCodec):
    tag, cls = "tuple", tuple

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return _encode_items(value, encode)

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        return tuple(context.decode(x) for x in expect(data, list, "A tuple"))


class _SetCodec(_ExactTypeCodec):
    tag = "set"
    cls: type = set

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return _encode_items(value, encode)

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        try:
            return self.cls(context.decode(x) for x in expect(data, list, "A set"))
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
        except Unencodable as error:
            error.path.insert(0, f"[{index}]")
            raise
    return items


class _BytesCodec(_ExactTypeCodec):
    tag, cls = "bytes", bytes

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return base64.b64encode(value).decode("ascii")

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        try:
            return base64.b64decode(expect(data, str, "bytes"), validate=True)
        except ValueError as error:
            raise DeferredDecodeError(f"Bad base64 for bytes: {error}") from None


class _IsoCodec(_ExactTypeCodec):
    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return cast(str, value.isoformat())

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        try:
            return self.cls.fromisoformat(expect(data, str, self.tag))  # type: ignore[attr-defined]
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
        parts = expect(data, list, "A timedelta")
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
        text = expect(data, str, "A decimal")
        if len(text) > 1000:
            raise DeferredDecodeError("A decimal of more than 1000 characters.")
        try:
            return decimal.Decimal(text)
        except decimal.InvalidOperation:
            raise DeferredDecodeError(f"Bad decimal {shorten(text)}.") from None


class _UUIDCodec(_ExactTypeCodec):
    tag, cls = "uuid", uuid.UUID

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return str(value)

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        try:
            return uuid.UUID(expect(data, str, "A UUID"))
        except ValueError:
            raise DeferredDecodeError(f"Bad UUID {shorten(data)}.") from None


class _EnumCodec(Codec):
    tag = "enum"

    def handles(self, cls: type) -> bool:
        return issubclass(cls, enum.Enum)

    def encode(self, value: Any, encode: Callable[[Any], JSON]) -> JSON:
        return {"cls": class_path(type(value)), "value": encode(value.value)}

    def decode(self, data: JSON, context: DecodeContext) -> Any:
        fields = fields_of(data, "An enum", cls=str, value=object)
        cls = class_from(fields["cls"], "Enum class")
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
        return class_from(data, "Class")


def builtin_codecs() -> list[Codec]:
    """A new instance of each built-in codec, in the order a registry is given them."""
    return [
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
    ]
