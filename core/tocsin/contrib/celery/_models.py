"""The model codecs: SQLAlchemy and Django model instances travel as class and primary
key, and are loaded again in the worker; neither ORM is imported unless it is in use."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from tocsin._errors import DeferredDecodeError, MissingInstanceError
from tocsin.contrib.celery._classes import class_from, class_path
from tocsin.contrib.celery._codecs import JSON, Codec, DecodeContext, fields_of


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

        fields = fields_of(data, "A SQLAlchemy instance", cls=str, pk=list)
        cls = class_from(fields["cls"], "Mapped class")
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
        fields = fields_of(data, "A Django instance", model=str, pk=object, db=object)
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
