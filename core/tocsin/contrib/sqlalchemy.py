"""Send the model and database signals from SQLAlchemy's ORM (``pip install tocsin[sqlalchemy]``).

One call wires everything a target covers::

    from tocsin.contrib.sqlalchemy import connect_signals

    connect_signals(Base, engine)                 # models of Base, connections of engine
    connect_signals(engine, using="primary")      # name the database for ``using``

Targets (any number per call):

* a **declarative base** (``DeclarativeBase`` subclass or ``declarative_base()``): every
  class mapped under it, now or later;
* a **mapped class** or its :class:`~sqlalchemy.orm.Mapper`: that class and the mapped
  classes that inherit from it;
* an :class:`~sqlalchemy.engine.Engine` (for an ``AsyncEngine``, pass its
  ``sync_engine``): ``connection_created`` for each new DBAPI connection it opens.

Anything else raises ``TypeError`` naming what is accepted.  Sessions need no wiring:
the session-level part (bulk deletes, the ``post_*`` actions of ``m2m_changed``) listens
on :class:`sqlalchemy.orm.Session` itself, so it covers every session, sessionmaker and
scoped session, and acts only for wired models.  Wiring a target twice changes nothing
(no double sends); :func:`disconnect_signals` undoes the wiring, and once no model
target is left every process-wide listener is removed again.

What is sent, and from which SQLAlchemy event (``sender`` is the model class, as in
Django, unless said otherwise):

``pre_init(sender, args, kwargs)``
    InstanceEvents ``init``: when the application constructs an instance, before the
    constructor runs.  ``kwargs`` is the very dict the constructor receives.
``post_init(sender, instance)``
    when the constructor has returned (the class's instrumented constructor calls a
    wrapper tocsin installs around the original ``__init__``).  Instances loaded from
    the database are not constructed, so neither init signal is sent for them (unlike
    Django, which calls ``__init__`` for every row it loads).
``pre_save`` / ``post_save(sender, instance, raw, using, update_fields[, created])``
    MapperEvents ``before_insert`` / ``after_insert`` and ``before_update`` /
    ``after_update``: inside the flush, per row, right before and after the row's
    INSERT or UPDATE.  ``created`` is True for inserts.  ``update_fields`` is None for
    inserts, and for updates the ``frozenset`` of column attribute names whose value
    changed (what the UPDATE writes; ``post_save`` also sees columns a ``pre_save``
    receiver changed).  An instance that SQLAlchemy flushes with no column change (say,
    only its many-to-many collection changed) sends no save signal.  ``raw`` is always
    False.  ``using`` is the database alias (see below).
``pre_delete`` / ``post_delete(sender, instance, using)``
    MapperEvents ``before_delete`` / ``after_delete`` for ``session.delete(obj)``; and,
    through SessionEvents ``do_orm_execute``, for ORM bulk deletes
    (``session.execute(delete(Model).where(...))``): when a receiver is connected for
    the model (or a subclass), the matching rows are first loaded into the session with
    ``select(Model).where(<the delete's criteria>)``, ``pre_delete`` is sent for each,
    the DELETE runs, then ``post_delete`` is sent for each, as Django's
    ``QuerySet.delete()`` does.  Limits: executemany-style deletes (a list of parameter
    sets), deletes of a plain ``Table`` and deletes through ``Connection.execute`` send
    nothing; rows another transaction inserts between the SELECT and the DELETE are
    deleted without signals; with ``synchronize_session=False`` the instances loaded for
    the signals stay in the session, stale, like any other.  Bulk ``update()`` and
    ``insert()`` send nothing, as Django's ``update()`` and ``bulk_create()`` send
    nothing.
``m2m_changed(sender, instance, action, reverse, model, pk_set, using)``
    for relationships with a ``secondary`` (association) table that are not
    ``viewonly``.  ``sender`` is the association :class:`~sqlalchemy.schema.Table`
    (Django sends the intermediate model).  ``pre_*`` and ``post_*`` are split between
    the two moments that exist in SQLAlchemy:

    * ``pre_add`` / ``pre_remove``: AttributeEvents ``append`` / ``remove``, when the
      Python collection is about to change (``post.tags.append(tag)``,
      ``post.tags.remove(tag)``, and each item that an assignment ``post.tags = [...]``
      adds or drops).  One signal per item: ``pk_set`` holds that item's primary key,
      or is empty when the item has none yet (a new object, before its first flush).
      A receiver that raises propagates out of the collection operation before this
      side's collection changes, but SQLAlchemy has by then mirrored the change onto
      the other side (``back_populates``/``backref``): roll the session back, as after
      any failed operation.
    * ``pre_clear``: AttributeEvents ``bulk_replace`` with no values, i.e. assigning an
      empty collection (``post.tags = []``), with ``pk_set=None``.
      ``post.tags.clear()`` is indistinguishable, for SQLAlchemy's events, from one
      ``remove`` per item, and sends ``pre_remove`` per item.
    * ``post_add`` / ``post_remove`` / ``post_clear``: SessionEvents ``after_flush`` of
      the flush that writes the association rows: every ``pre_*`` is answered by its
      ``post_*`` there, in the same order, with ``pk_set`` now complete (``None`` for
      ``post_clear``).  A rollback of the session forgets the ``pre_*`` not yet
      answered (the changes are gone with it).

    ``instance`` is the object whose collection changed; ``model`` the class of the
    objects added or removed; changes that SQLAlchemy mirrors on the other side
    (``back_populates``/``backref``) are not sent again for that side.  ``reverse``
    follows Django's through tables, whose first column points at the model that
    declares the field: it is False for the side whose own key is the association
    table's first foreign-key column (``post_tags(post_id, tag_id)``: ``Post.tags`` is
    forward, ``Tag.posts`` is reverse).  ``using`` is the alias of the session's bind
    for the instance, or None before the instance belongs to a bound session.
``class_prepared(sender)``
    MapperEvents ``mapper_configured``: once per mapped class, when SQLAlchemy
    configures its mapper (on first use, or ``configure_mappers()``).  Classes already
    configured when they are wired are not announced.  When the first construction of
    an instance is what configures the class, ``class_prepared`` arrives between that
    instance's ``pre_init`` and ``post_init``.
``connection_created(sender, connection, using)``
    PoolEvents ``connect`` of a wired engine: ``sender`` is the engine's dialect class
    (e.g. ``SQLiteDialect_pysqlite``, ``PGDialect_psycopg``; Django sends its database
    wrapper class), ``connection`` the new DBAPI connection, and ``using`` (a tocsin
    addition) the engine's alias.

``using``
    the name an engine was wired with (``connect_signals(engine, using="primary")``),
    else its URL with the password hidden (``engine.url.render_as_string()``), e.g.
    ``"postgresql+psycopg://app:***@db/app"``; :func:`database_alias` gives it.

Receivers of the save, delete and ``m2m_changed`` ``post_*`` signals run inside the
flush.  They are sent with ``send``: a receiver's exception propagates, the flush fails
and SQLAlchemy rolls the session's transaction back, so nothing of that flush is
committed (call ``session.rollback()`` before using the session again, as after any
failed flush).  Inside the flush, receivers may read and (in ``pre_save``) change the
instance's column attributes and may run SQL on ``object_session(instance).connection()``,
but must not add, delete or flush objects in the session (SQLAlchemy's rule for its
mapper flush events).

Cost without receivers: each event checks whether the signal has any receiver at all,
then ``signal.has_listeners(sender)``, and returns; arguments are built only for signals
that have a receiver for the sender (``bench/bench_sqlalchemy.py`` measures a flush of
inserts, updates or deletes at about 2-4% slower wired than unwired).  The model-level
listeners are process-wide (they are installed on :class:`~sqlalchemy.orm.Mapper` and
:class:`~sqlalchemy.orm.Session`), so models that are not wired pay that check too.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import UnboundExecutionError
from sqlalchemy.orm import (
    EXT_CONTINUE,
    Mapper,
    ORMExecuteState,
    RelationshipProperty,
    Session,
    registry,
    scoped_session,
    sessionmaker,
)
from sqlalchemy.orm.attributes import OP_BULK_REPLACE, AttributeEventToken
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.sql.schema import Table

from tocsin.signals.db import connection_created
from tocsin.signals.models import (
    class_prepared,
    m2m_changed,
    post_delete,
    post_init,
    post_save,
    pre_delete,
    pre_init,
    pre_save,
)

__all__ = ["connect_signals", "database_alias", "disconnect_signals"]

_ACCEPTED = (
    "a declarative base class, a mapped class, a sqlalchemy.orm.Mapper, or a sqlalchemy Engine"
)

_lock = threading.RLock()

#: The wired model roots (declarative bases and mapped classes).  Replaced, never
#: mutated, so handlers read it without the lock.
_roots: tuple[type, ...] = ()
#: class -> whether it descends from a wired root; emptied whenever _roots changes.
_wired_cache: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()

#: Wired engines -> their pool listener.
_engines: weakref.WeakKeyDictionary[Engine, Callable[..., None]] = weakref.WeakKeyDictionary()
#: Engine -> alias given by the user or computed from its URL.
_aliases: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()
_named: weakref.WeakSet[Engine] = weakref.WeakSet()

#: Mapped class -> the original constructor its ClassManager called before tocsin.
_original_inits: weakref.WeakKeyDictionary[type, Callable[..., None]] = weakref.WeakKeyDictionary()
#: Many-to-many relationships that have attribute listeners.
_relations: dict[RelationshipProperty[Any], _ManyToMany] = {}
#: Parent instance state -> the m2m ``pre_*`` actions still waiting for their flush.
_pending: weakref.WeakKeyDictionary[InstanceState[Any], list[_PendingAction]] = (
    weakref.WeakKeyDictionary()
)
_installed = False


# -- public API ---------------------------------------------------------------------------


def connect_signals(*targets: Any, using: str | None = None) -> None:
    """Wire SQLAlchemy events so that *targets* send tocsin's model and db signals.

    See the module documentation for what each kind of target sends.  ``using`` names
    the engines among *targets* (the ``using`` argument of the signals); it is an
    error to pass it without an engine.  Wiring something already wired is a no-op.
    """
    kinds = [_classify(target) for target in targets]
    engines = [obj for kind, obj in kinds if kind == "engine"]
    if using is not None:
        if not isinstance(using, str):
            raise TypeError(f"using must be a str naming the database, not {using!r}.")
        if not engines:
            raise TypeError("connect_signals(using=...) names an engine, but no Engine was given.")
    with _lock:
        for kind, obj in kinds:
            if kind == "engine":
                _wire_engine(obj, using)
            else:
                _wire_model(obj)


def disconnect_signals(*targets: Any) -> bool:
    """Undo :func:`connect_signals` for *targets*; True if any of them was wired.

    Once no model target is left, every listener tocsin put on SQLAlchemy (including
    the constructor wrappers and the collection listeners) is removed.
    """
    kinds = [_classify(target) for target in targets]
    removed = False
    with _lock:
        for kind, obj in kinds:
            if kind == "engine":
                removed |= _unwire_engine(obj)
            else:
                removed |= _unwire_model(obj)
    return removed


def database_alias(bind: Engine | Connection) -> str:
    """The ``using`` value for *bind*: its wired name, else its URL without password."""
    engine = bind.engine
    alias = _aliases.get(engine)
    if alias is None:
        alias = engine.url.render_as_string(hide_password=True)
        _aliases[engine] = alias
    return alias


# -- classifying targets ------------------------------------------------------------------


def _classify(target: Any) -> tuple[str, Any]:
    if isinstance(target, Engine):
        return "engine", target
    if isinstance(target, Mapper):
        return "model", target.class_
    if isinstance(target, type):
        if issubclass(target, Session):
            raise TypeError(_session_message(target))
        mapper = inspect(target, raiseerr=False)
        if isinstance(mapper, Mapper):
            return "model", target
        if isinstance(getattr(target, "registry", None), registry):
            return "model", target  # a declarative base: not mapped itself
    elif isinstance(target, (Session, sessionmaker, scoped_session)):
        raise TypeError(_session_message(target))
    raise TypeError(f"connect_signals() takes {_ACCEPTED}; got {target!r}.")


def _session_message(target: Any) -> str:
    return (
        f"connect_signals() takes {_ACCEPTED}; got {target!r}. Sessions need no "
        f"wiring: wire the declarative base (or mapped classes) of your models, and "
        f"every session sends their signals."
    )


# -- engines ------------------------------------------------------------------------------


def _wire_engine(engine: Engine, using: str | None) -> None:
    if engine in _engines:
        if using is not None and _aliases.get(engine) != using:
            raise ValueError(
                f"{engine!r} is already wired as {_aliases.get(engine)!r}; disconnect it "
                f"before wiring it again as {using!r}."
            )
        return
    if using is not None:
        _aliases[engine] = using
        _named.add(engine)
    dialect_class = type(engine.dialect)
    engine_ref = weakref.ref(engine)

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        if connection_created.has_listeners(dialect_class):
            wired = engine_ref()
            connection_created.send(
                dialect_class,
                connection=dbapi_connection,
                using=database_alias(wired) if wired is not None else None,
            )

    event.listen(engine, "connect", on_connect)
    _engines[engine] = on_connect


def _unwire_engine(engine: Engine) -> bool:
    listener = _engines.pop(engine, None)
    if listener is None:
        return False
    event.remove(engine, "connect", listener)
    if engine in _named:
        _named.discard(engine)
        _aliases.pop(engine, None)
    return True


# -- models: wiring -----------------------------------------------------------------------


def _wire_model(root: type) -> None:
    global _roots
    if root in _roots:
        return
    if not _installed:
        _install()
    _roots = (*_roots, root)
    _wired_cache.clear()
    try:
        # Mappers configured before now never fire mapper_configured again: prepare
        # them here (the others are prepared by _on_mapper_configured when they are).
        for mapper in _registry_of(root).mappers:
            if mapper.configured and issubclass(mapper.class_, root):
                _prepare(mapper)
    except BaseException:
        _unwire_model(root)
        raise


def _unwire_model(root: type) -> bool:
    global _roots
    if root not in _roots:
        return False
    _roots = tuple(r for r in _roots if r is not root)
    _wired_cache.clear()
    if not _roots:
        _uninstall()
    return True


def _registry_of(root: type) -> registry:
    mapper: Mapper[Any] | None = inspect(root, raiseerr=False)
    if isinstance(mapper, Mapper):
        return mapper.registry
    reg = getattr(root, "registry", None)  # a declarative base (checked by _classify)
    assert isinstance(reg, registry)
    return reg


_Listeners = tuple[tuple[str, Callable[..., Any], dict[str, bool]], ...]
_MAPPER_EVENTS: _Listeners = ()  # filled in at the end of the module
_SESSION_EVENTS: _Listeners = ()


def _install() -> None:
    global _installed
    for name, fn, options in _MAPPER_EVENTS:
        event.listen(Mapper, name, fn, **options)
    for name, fn, options in _SESSION_EVENTS:
        event.listen(Session, name, fn, **options)
    _installed = True


def _uninstall() -> None:
    global _installed
    for name, fn, _ in _MAPPER_EVENTS:
        event.remove(Mapper, name, fn)
    for name, fn, _ in _SESSION_EVENTS:
        event.remove(Session, name, fn)
    for cls, original in list(_original_inits.items()):
        manager_of_class(cls).original_init = original
    _original_inits.clear()
    for relation in list(_relations.values()):
        relation.remove()
    _relations.clear()
    _pending.clear()
    _installed = False


def _is_wired(cls: type) -> bool:
    wired = _wired_cache.get(cls)
    if wired is None:
        mro = cls.__mro__
        wired = any(root in mro for root in _roots)
        _wired_cache[cls] = wired
    return wired


def _prepare(mapper: Mapper[Any]) -> None:
    """Give a configured mapper's class a post_init wrapper and its m2m listeners."""
    with _lock:
        cls = mapper.class_
        if cls not in _original_inits:
            manager = manager_of_class(cls)
            original = manager.original_init
            if original is not None:
                _original_inits[cls] = original
                manager.original_init = _post_init_wrapper(cls, original)
        for prop in mapper.relationships:
            if prop.secondary is not None and not prop.viewonly and prop not in _relations:
                relation = _ManyToMany(prop)
                _relations[prop] = relation
                relation.listen()


def _post_init_wrapper(cls: type, original: Callable[..., None]) -> Callable[..., None]:
    def init_then_post_init(instance: Any, *args: Any, **kwargs: Any) -> None:
        original(instance, *args, **kwargs)
        if post_init.has_listeners(cls) and _is_wired(cls):
            post_init.send(cls, instance=instance)

    return init_then_post_init


# -- models: handlers ---------------------------------------------------------------------
#
# Every ORM event of every model runs one of these, wired or not, receivers or not, so
# each first asks has_listeners(sender) (which answers a signal with no receivers at once),
# then whether the class is wired, and only then builds the arguments.


def _on_mapper_configured(mapper: Mapper[Any], cls: type) -> None:
    _prepare(mapper)
    if class_prepared.has_listeners(cls) and _is_wired(cls):
        class_prepared.send(cls)


def _on_init(state: InstanceState[Any], args: Any, kwargs: Any) -> None:
    cls = state.class_
    if pre_init.has_listeners(cls) and _is_wired(cls):
        pre_init.send(cls, args=args, kwargs=kwargs)


# The flush handlers are listened to with raw=True and retval=True, which is how
# SQLAlchemy calls a listener directly, without a wrapper of its own: they receive the
# InstanceState and return EXT_CONTINUE.


def _on_before_insert(
    mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]
) -> Any:
    cls = mapper.class_
    if pre_save.has_listeners(cls) and _is_wired(cls):
        pre_save.send(
            cls,
            instance=state.obj(),
            raw=False,
            using=database_alias(connection),
            update_fields=None,
        )
    return EXT_CONTINUE


def _on_after_insert(mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]) -> Any:
    cls = mapper.class_
    if post_save.has_listeners(cls) and _is_wired(cls):
        post_save.send(
            cls,
            instance=state.obj(),
            created=True,
            raw=False,
            using=database_alias(connection),
            update_fields=None,
        )
    return EXT_CONTINUE


def _changed_columns(mapper: Mapper[Any], state: InstanceState[Any]) -> frozenset[str]:
    columns = mapper.column_attrs
    return frozenset(
        key
        for key in state.committed_state
        if key in columns and state.attrs[key].history.has_changes()
    )


def _on_before_update(
    mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]
) -> Any:
    cls = mapper.class_
    if pre_save.has_listeners(cls) and _is_wired(cls):
        fields = _changed_columns(mapper, state)
        if fields:
            pre_save.send(
                cls,
                instance=state.obj(),
                raw=False,
                using=database_alias(connection),
                update_fields=fields,
            )
    return EXT_CONTINUE


def _on_after_update(mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]) -> Any:
    cls = mapper.class_
    if post_save.has_listeners(cls) and _is_wired(cls):
        fields = _changed_columns(mapper, state)
        if fields:
            post_save.send(
                cls,
                instance=state.obj(),
                created=False,
                raw=False,
                using=database_alias(connection),
                update_fields=fields,
            )
    return EXT_CONTINUE


def _on_before_delete(
    mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]
) -> Any:
    cls = mapper.class_
    if pre_delete.has_listeners(cls) and _is_wired(cls):
        pre_delete.send(cls, instance=state.obj(), using=database_alias(connection))
    return EXT_CONTINUE


def _on_after_delete(mapper: Mapper[Any], connection: Connection, state: InstanceState[Any]) -> Any:
    cls = mapper.class_
    if post_delete.has_listeners(cls) and _is_wired(cls):
        post_delete.send(cls, instance=state.obj(), using=database_alias(connection))
    return EXT_CONTINUE


def _wants_delete_signals(mapper: Mapper[Any]) -> bool:
    for each in mapper.self_and_descendants:
        cls = each.class_
        if (pre_delete.has_listeners(cls) or post_delete.has_listeners(cls)) and _is_wired(cls):
            return True
    return False


def _on_do_orm_execute(state: ORMExecuteState) -> Any:
    """Bulk ``delete(Model)``: load the rows, pre_delete each, delete, post_delete each."""
    if not state.is_delete:
        return None
    mapper = state.bind_mapper
    if mapper is None or not _wants_delete_signals(mapper):
        return None
    params = state.parameters
    if isinstance(params, list):
        return None  # executemany: no criteria to load the rows by
    statement = state.statement
    where = getattr(statement, "whereclause", None)
    query = select(mapper)
    if where is not None:
        query = query.where(where)
    session = state.session
    instances = session.scalars(query, params).unique().all()
    using = _session_alias(session, mapper)
    for instance in instances:
        cls = type(instance)
        if pre_delete.has_listeners(cls) and _is_wired(cls):
            pre_delete.send(cls, instance=instance, using=using)
    result = state.invoke_statement()
    for instance in instances:
        cls = type(instance)
        if post_delete.has_listeners(cls) and _is_wired(cls):
            post_delete.send(cls, instance=instance, using=using)
    return result


def _session_alias(session: Session, mapper: Mapper[Any]) -> str | None:
    try:
        bind = session.get_bind(mapper)
    except UnboundExecutionError:
        return None
    return database_alias(bind)


# -- many-to-many ---------------------------------------------------------------------------


_PendingAction = tuple["_ManyToMany", str, list[Any] | None]


class _ManyToMany:
    """Listeners for one relationship through an association table."""

    def __init__(self, prop: RelationshipProperty[Any]) -> None:
        secondary = prop.secondary
        assert isinstance(secondary, Table)
        self.prop = prop
        self.key = prop.key
        self.sender: Table = secondary
        self.model: type = prop.mapper.class_
        self.reverse = _is_reverse(prop, secondary)
        self.attribute = getattr(prop.parent.class_, prop.key)
        #: states whose collection is being replaced by an empty one, right now
        self.clearing: weakref.WeakSet[InstanceState[Any]] = weakref.WeakSet()

    def listen(self) -> None:
        for name, fn in self._listeners():
            event.listen(self.attribute, name, fn, raw=True, propagate=True)

    def remove(self) -> None:
        for name, fn in self._listeners():
            event.remove(self.attribute, name, fn)

    def _listeners(self) -> tuple[tuple[str, Callable[..., Any]], ...]:
        return (
            ("append", self.on_append),
            ("remove", self.on_remove),
            ("bulk_replace", self.on_bulk_replace),
        )

    def _own(self, initiator: AttributeEventToken | None) -> bool:
        # Changes mirrored from the other side of a back_populates/backref pair carry
        # the other side's token: the other side's listener reports them.
        if initiator is None:
            return True
        token: object = initiator.parent_token  # the RelationshipProperty at run time
        return token is self.prop

    def _active(self, state: InstanceState[Any]) -> bool:
        return m2m_changed.has_listeners(self.sender) and _is_wired(state.class_)

    def on_append(
        self, state: InstanceState[Any], value: Any, initiator: AttributeEventToken | None
    ) -> None:
        if self._own(initiator) and self._active(state):
            self.pre(state, "add", [value])

    def on_remove(
        self, state: InstanceState[Any], value: Any, initiator: AttributeEventToken | None
    ) -> None:
        if not (self._own(initiator) and self._active(state)):
            return
        if initiator is not None and initiator.op is OP_BULK_REPLACE and state in self.clearing:
            return  # part of an assignment of an empty collection: pre_clear said it
        self.pre(state, "remove", [value])

    def on_bulk_replace(
        self,
        state: InstanceState[Any],
        values: list[Any],
        initiator: AttributeEventToken | None,
        **kw: Any,
    ) -> None:
        if not (self._own(initiator) and self._active(state)):
            return
        if values:
            self.clearing.discard(state)
        else:
            self.clearing.add(state)
            self.pre(state, "clear", None)

    def pre(self, state: InstanceState[Any], action: str, objects: list[Any] | None) -> None:
        m2m_changed.send(
            self.sender,
            instance=state.obj(),
            action=f"pre_{action}",
            reverse=self.reverse,
            model=self.model,
            pk_set=None if objects is None else _pk_set(objects),
            using=_state_alias(state),
        )
        with _lock:
            _pending.setdefault(state, []).append((self, action, objects))

    def post(
        self, state: InstanceState[Any], action: str, objects: list[Any] | None, using: str | None
    ) -> None:
        m2m_changed.send(
            self.sender,
            instance=state.obj(),
            action=f"post_{action}",
            reverse=self.reverse,
            model=self.model,
            pk_set=None if objects is None else _pk_set(objects),
            using=using,
        )


def _is_reverse(prop: RelationshipProperty[Any], secondary: Table) -> bool:
    """False when the parent's own column comes first in the association table."""
    position = {id(col): index for index, col in enumerate(secondary.columns)}
    own = [position[id(c)] for _, c in prop.synchronize_pairs if id(c) in position]
    other = [
        position[id(c)] for _, c in prop.secondary_synchronize_pairs or () if id(c) in position
    ]
    if not own or not other:
        return False
    return min(own) > min(other)


def _pk_of(instance: Any) -> Any:
    state: InstanceState[Any] = inspect(instance)
    if state.key is not None:
        identity = state.key[1]
    else:
        mapper = state.mapper
        identity = tuple(
            state.dict.get(mapper.get_property_by_column(col).key) for col in mapper.primary_key
        )
        if any(value is None for value in identity):
            return None
    return identity[0] if len(identity) == 1 else identity


def _pk_set(objects: Iterable[Any]) -> set[Any]:
    return {pk for obj in objects if (pk := _pk_of(obj)) is not None}


def _state_alias(state: InstanceState[Any]) -> str | None:
    session = state.session
    if session is None:
        return None
    return _session_alias(session, state.mapper)


def _on_after_flush(session: Session, flush_context: Any) -> None:
    if not _pending:
        return
    with _lock:
        mine = [
            (state, actions)
            for state, actions in list(_pending.items())
            if state.session_id == session.hash_key
        ]
        for state, _ in mine:
            _pending.pop(state, None)
    for state, actions in mine:
        using = _session_alias(session, state.mapper)
        for relation, action, objects in actions:
            relation.clearing.discard(state)
            relation.post(state, action, objects, using)


def _on_after_soft_rollback(session: Session, previous_transaction: Any) -> None:
    if not _pending:
        return
    with _lock:
        for state in [s for s in list(_pending.keys()) if s.session_id == session.hash_key]:
            _pending.pop(state, None)


_DIRECT = {"raw": True, "retval": True}
_MAPPER_EVENTS = (
    ("mapper_configured", _on_mapper_configured, {}),
    ("init", _on_init, {"raw": True}),
    ("before_insert", _on_before_insert, _DIRECT),
    ("after_insert", _on_after_insert, _DIRECT),
    ("before_update", _on_before_update, _DIRECT),
    ("after_update", _on_after_update, _DIRECT),
    ("before_delete", _on_before_delete, _DIRECT),
    ("after_delete", _on_after_delete, _DIRECT),
)
_SESSION_EVENTS = (
    ("do_orm_execute", _on_do_orm_execute, {}),
    ("after_flush", _on_after_flush, {}),
    ("after_soft_rollback", _on_after_soft_rollback, {}),
)
