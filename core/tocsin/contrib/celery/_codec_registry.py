"""The codec registry every deferred receiver uses, :data:`codecs`: the built-in and model
codecs, and the functions an application configures it with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tocsin._errors import DeferredConfigurationError
from tocsin.contrib.celery._builtin_codecs import builtin_codecs
from tocsin.contrib.celery._codecs import Codec, CodecRegistry
from tocsin.contrib.celery._models import DjangoModelCodec, SQLAlchemyCodec

#: The codecs every deferred receiver uses.  Add yours with :func:`register_codec`.
codecs = CodecRegistry([*builtin_codecs(), DjangoModelCodec(), SQLAlchemyCodec()])


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
