"""tocsin.contrib.sqlalchemy against real databases: SQLite always, PostgreSQL when installed.

The tests marked with the ``engine`` fixture run once on SQLite (a file in tmp_path) and
once on a throwaway PostgreSQL cluster started by the ``postgresql_url`` fixture.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    ForeignKey,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    configure_mappers,
    mapped_column,
    object_session,
    relationship,
    scoped_session,
    sessionmaker,
)
from sqlalchemy.orm.instrumentation import manager_of_class

from tocsin import Signal
from tocsin.contrib.sqlalchemy import connect_signals, database_alias, disconnect_signals
from tocsin.signals import (
    class_prepared,
    connection_created,
    m2m_changed,
    post_delete,
    post_init,
    post_save,
    pre_delete,
    pre_init,
    pre_save,
)


class Base(DeclarativeBase):
    pass


post_tags = Table(
    "post_tags",
    Base.metadata,
    Column("post_id", ForeignKey("posts.id"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id"), primary_key=True),
)


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(String(100), default="")
    tags: Mapped[list[Tag]] = relationship(secondary=post_tags, back_populates="posts")


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    posts: Mapped[list[Post]] = relationship(secondary=post_tags, back_populates="tags")


# Configured now, so that no test sees their class_prepared (a class is configured on its
# first use: its first construction would send class_prepared between pre_init and
# post_init).  test_class_prepared_when_the_mapper_is_configured uses classes of its own.
configure_mappers()


SIGNALS: dict[str, Signal] = {
    "pre_init": pre_init,
    "post_init": post_init,
    "pre_save": pre_save,
    "post_save": post_save,
    "pre_delete": pre_delete,
    "post_delete": post_delete,
    "m2m_changed": m2m_changed,
    "class_prepared": class_prepared,
    "connection_created": connection_created,
}


class Events:
    """Every model and db signal, in the order sent: (signal name, sender, arguments)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any, dict[str, Any]]] = []

    def receiver(self, name: str) -> Callable[..., None]:
        def record(sender: Any, **named: Any) -> None:
            named.pop("signal")
            self.items.append((name, sender, named))

        return record

    def of(self, name: str) -> list[tuple[Any, dict[str, Any]]]:
        return [(sender, named) for n, sender, named in self.items if n == name]

    def names(self) -> list[str]:
        return [name for name, _, _ in self.items]

    def m2m(self) -> list[tuple[str, Any, set[Any] | None, bool, Any]]:
        """(action, instance, pk_set, reverse, model) of each m2m_changed."""
        return [
            (n["action"], n["instance"], n["pk_set"], n["reverse"], n["model"])
            for _, n in self.of("m2m_changed")
        ]

    def clear(self) -> None:
        self.items.clear()


@pytest.fixture
def events() -> Iterator[Events]:
    recorded = Events()
    with ExitStack() as stack:
        for name, signal in SIGNALS.items():
            stack.enter_context(signal.connected_to(recorded.receiver(name)))
        yield recorded


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    """A real database with the test tables, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.sqlite'}"
    else:
        url = request.getfixturevalue("postgresql_url")
    eng = create_engine(url)
    Base.metadata.create_all(eng)
    try:
        yield eng
    finally:
        Base.metadata.drop_all(eng)
        eng.dispose()


@pytest.fixture
def wired(engine: Engine) -> Iterator[Engine]:
    connect_signals(Base, engine, using="default")
    try:
        yield engine
    finally:
        disconnect_signals(Base, engine)


@pytest.fixture
def models_wired() -> Iterator[None]:
    """Base wired, for tests that need no database."""
    connect_signals(Base)
    try:
        yield
    finally:
        disconnect_signals(Base)


def count(session: Session, model: type[Base]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


# -- init ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("models_wired")
def test_pre_init_and_post_init_on_construction(events: Events) -> None:
    post = Post(title="hello")

    assert events.names() == ["pre_init", "post_init"]
    assert events.of("pre_init") == [(Post, {"args": (), "kwargs": {"title": "hello"}})]
    assert events.of("post_init") == [(Post, {"instance": post})]


@pytest.mark.usefixtures("models_wired")
def test_pre_init_receiver_sees_the_constructor_kwargs_and_may_change_them(
    events: Events,
) -> None:
    def fill_body(sender: Any, kwargs: dict[str, Any], **named: Any) -> None:
        kwargs.setdefault("body", "filled by pre_init")

    with pre_init.connected_to(fill_body, sender=Post):
        post = Post(title="x")
        tag = Tag(name="t")

    assert post.body == "filled by pre_init"
    assert [sender for sender, _ in events.of("post_init")] == [Post, Tag]
    assert events.of("post_init")[1][1]["instance"] is tag


def test_instances_loaded_from_the_database_send_no_init_signals(
    wired: Engine, events: Events
) -> None:
    with Session(wired) as session:
        session.add(Post(title="stored"))
        session.commit()
    events.clear()
    with Session(wired) as session:
        loaded = session.scalars(select(Post)).one()
        assert loaded.title == "stored"
    assert events.of("pre_init") == []
    assert events.of("post_init") == []


# -- save ---------------------------------------------------------------------------------


def test_insert_sends_pre_save_and_post_save_created(wired: Engine, events: Events) -> None:
    ids_seen: list[int | None] = []

    def remember_id(sender: Any, instance: Post, **named: Any) -> None:
        ids_seen.append(instance.id)

    with pre_save.connected_to(remember_id, sender=Post), Session(wired) as session:
        post = Post(title="first")
        session.add(post)
        events.clear()
        session.commit()
        post_id = post.id

    assert ids_seen == [None]  # pre_save: before the INSERT
    assert events.names() == ["pre_save", "post_save"]
    assert events.of("pre_save") == [
        (Post, {"instance": post, "raw": False, "using": "default", "update_fields": None})
    ]
    sender, named = events.of("post_save")[0]
    assert sender is Post
    assert named == {
        "instance": post,
        "created": True,
        "raw": False,
        "using": "default",
        "update_fields": None,
    }
    assert post_id is not None


def test_update_sends_the_changed_columns_as_update_fields(wired: Engine, events: Events) -> None:
    with Session(wired) as session:
        post = Post(title="before", body="b")
        session.add(post)
        session.commit()
        events.clear()

        post.title = "after"
        session.commit()
        assert [(s, n["update_fields"]) for s, n in events.of("pre_save")] == [
            (Post, frozenset({"title"}))
        ]
        assert [(n["created"], n["update_fields"]) for _, n in events.of("post_save")] == [
            (False, frozenset({"title"}))
        ]

        assert post.title == "after"  # loads the row again (commit expired it)
        events.clear()
        post.title = "after"  # the same value: SQLAlchemy writes nothing
        session.commit()
        assert events.names() == []
        post.tags.append(Tag(name="t"))  # only the collection of post changes
        session.commit()
        assert [s for s, _ in events.of("pre_save")] == [Tag]  # the new tag, not post
        assert [s for s, _ in events.of("post_save")] == [Tag]


def test_pre_save_receiver_changes_are_written_and_reported(wired: Engine, events: Events) -> None:
    def stamp(sender: Any, instance: Post, **named: Any) -> None:
        instance.body = f"stamped {instance.title}"

    with Session(wired) as session:
        post = Post(title="one")
        session.add(post)
        with pre_save.connected_to(stamp, sender=Post):
            session.commit()
            events.clear()
            post.title = "two"
            session.commit()
        assert events.of("post_save")[0][1]["update_fields"] == frozenset({"title", "body"})

    with Session(wired) as session:
        assert session.scalars(select(Post.body)).one() == "stamped two"


def test_receivers_filter_by_model_class(wired: Engine) -> None:
    seen: list[Any] = []

    def tag_saved(sender: Any, instance: Any, **named: Any) -> None:
        seen.append(instance)

    with post_save.connected_to(tag_saved, sender=Tag), Session(wired) as session:
        tag = Tag(name="t")
        session.add_all([Post(title="p"), tag])
        session.commit()
    assert seen == [tag]


# -- delete -------------------------------------------------------------------------------


def test_session_delete_sends_pre_delete_and_post_delete(wired: Engine, events: Events) -> None:
    rows_seen: list[int] = []

    def count_rows(sender: Any, instance: Post, **named: Any) -> None:
        session = object_session(instance)
        assert session is not None
        rows_seen.append(count(session, Post))

    with Session(wired) as session:
        post = Post(title="doomed")
        session.add(post)
        session.commit()
        events.clear()
        with (
            pre_delete.connected_to(count_rows, sender=Post),
            post_delete.connected_to(count_rows, sender=Post),
        ):
            session.delete(post)
            session.flush()
        session.commit()

    assert rows_seen == [1, 0]
    assert events.of("pre_delete") == [(Post, {"instance": post, "using": "default"})]
    assert events.of("post_delete") == [(Post, {"instance": post, "using": "default"})]


def test_bulk_delete_loads_the_rows_and_sends_for_each(wired: Engine, events: Events) -> None:
    with Session(wired) as session:
        session.add_all([Post(title="a"), Post(title="b"), Post(title="keep")])
        session.commit()
    statements: list[str] = []

    def record_sql(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(wired, "before_cursor_execute", record_sql)
    try:
        with Session(wired) as session:
            events.clear()
            result = session.execute(delete(Post).where(Post.title != "keep"))
            assert result.rowcount == 2  # type: ignore[attr-defined]
            session.commit()
            assert [n["instance"].title for _, n in events.of("pre_delete")] == ["a", "b"]
            assert [n["instance"].title for _, n in events.of("post_delete")] == ["a", "b"]
            assert {(s, n["using"]) for s, n in events.of("post_delete")} == {(Post, "default")}
            assert events.names() == ["pre_delete"] * 2 + ["post_delete"] * 2
            assert statements == ["SELECT", "DELETE"]
            assert count(session, Post) == 1
    finally:
        event.remove(wired, "before_cursor_execute", record_sql)


def test_bulk_delete_without_delete_receivers_runs_only_the_delete(wired: Engine) -> None:
    with Session(wired) as session:
        session.add_all([Post(title="a"), Post(title="b")])
        session.commit()
    statements: list[str] = []

    def record_sql(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(wired, "before_cursor_execute", record_sql)
    try:
        with Session(wired) as session:
            session.execute(delete(Post))
            session.commit()
    finally:
        event.remove(wired, "before_cursor_execute", record_sql)
    assert statements == ["DELETE"]


def test_bulk_delete_of_a_table_sends_nothing(wired: Engine, events: Events) -> None:
    with Session(wired) as session:
        session.add(Post(title="a"))
        session.commit()
        events.clear()
        session.execute(delete(Post.__table__))
        session.commit()
        assert count(session, Post) == 0
    assert events.items == []


# -- many-to-many -------------------------------------------------------------------------


def test_m2m_add_remove_and_clear(wired: Engine, events: Events) -> None:
    with Session(wired) as session:
        a, b, c = Tag(name="a"), Tag(name="b"), Tag(name="c")
        post = Post(title="p")
        session.add_all([a, b, c, post])
        session.commit()
        events.clear()

        post.tags.append(a)
        post.tags.extend([b, c])
        assert events.m2m() == [
            ("pre_add", post, {a.id}, False, Tag),
            ("pre_add", post, {b.id}, False, Tag),
            ("pre_add", post, {c.id}, False, Tag),
        ]
        session.flush()
        assert [m[0] for m in events.m2m()] == ["pre_add"] * 3 + ["post_add"] * 3
        assert events.m2m()[3:] == [
            ("post_add", post, {a.id}, False, Tag),
            ("post_add", post, {b.id}, False, Tag),
            ("post_add", post, {c.id}, False, Tag),
        ]
        assert {sender for sender, _ in events.of("m2m_changed")} == {post_tags}
        assert {n["using"] for _, n in events.of("m2m_changed")} == {"default"}
        session.commit()

        events.clear()
        post.tags.remove(b)
        session.commit()
        assert events.m2m() == [
            ("pre_remove", post, {b.id}, False, Tag),
            ("post_remove", post, {b.id}, False, Tag),
        ]

        events.clear()
        post.tags = []
        assert events.m2m() == [("pre_clear", post, None, False, Tag)]
        session.commit()
        assert events.m2m() == [
            ("pre_clear", post, None, False, Tag),
            ("post_clear", post, None, False, Tag),
        ]
        rows = session.execute(select(post_tags)).all()
        assert rows == []

        events.clear()
        post.tags = [a, b]
        post.tags = [b, c]  # keeps b: drops a, adds c
        session.commit()
        assert events.m2m() == [
            ("pre_add", post, {a.id}, False, Tag),
            ("pre_add", post, {b.id}, False, Tag),
            ("pre_add", post, {c.id}, False, Tag),
            ("pre_remove", post, {a.id}, False, Tag),
            ("post_add", post, {a.id}, False, Tag),
            ("post_add", post, {b.id}, False, Tag),
            ("post_add", post, {c.id}, False, Tag),
            ("post_remove", post, {a.id}, False, Tag),
        ]
        stored = {row.tag_id for row in session.execute(select(post_tags)).all()}
        assert stored == {b.id, c.id}


def test_m2m_from_the_reverse_side_is_sent_once_with_reverse_true(
    wired: Engine, events: Events
) -> None:
    with Session(wired) as session:
        tag, post = Tag(name="t"), Post(title="p")
        session.add_all([tag, post])
        session.commit()
        events.clear()

        tag.posts.append(post)
        assert post.tags == [tag]  # SQLAlchemy mirrored it; tocsin does not send it twice
        session.commit()
        assert events.m2m() == [
            ("pre_add", tag, {post.id}, True, Post),
            ("post_add", tag, {post.id}, True, Post),
        ]


def test_m2m_new_objects_have_their_pk_only_after_the_flush(wired: Engine, events: Events) -> None:
    with Session(wired) as session:
        post = Post(title="p")
        session.add(post)
        session.commit()
        events.clear()

        fresh = Tag(name="new")
        post.tags.append(fresh)
        session.commit()
        assert events.m2m() == [
            ("pre_add", post, set(), False, Tag),
            ("post_add", post, {fresh.id}, False, Tag),
        ]


def test_m2m_post_add_is_sent_once_the_rows_are_written(wired: Engine) -> None:
    rows_seen: list[int] = []

    def count_links(sender: Any, instance: Post, action: str, **named: Any) -> None:
        session = object_session(instance)
        assert session is not None
        rows_seen.append(len(session.connection().execute(select(post_tags)).all()))

    with Session(wired) as session:
        post, tag = Post(title="p"), Tag(name="t")
        session.add_all([post, tag])
        session.commit()
        with m2m_changed.connected_to(count_links, sender=post_tags):
            post.tags.append(tag)
            session.commit()
    assert rows_seen == [0, 1]


def test_m2m_pre_add_receiver_raising_propagates_before_the_change(
    wired: Engine, events: Events
) -> None:
    def refuse(sender: Any, action: str, **named: Any) -> None:
        if action == "pre_add":
            raise PermissionError("no tags today")

    with Session(wired) as session:
        post, tag = Post(title="p"), Tag(name="t")
        session.add_all([post, tag])
        session.commit()
        with m2m_changed.connected_to(refuse), pytest.raises(PermissionError):
            post.tags.append(tag)
        assert post.tags == []
        session.rollback()  # SQLAlchemy had mirrored it on tag.posts already
        session.commit()
        assert session.execute(select(post_tags)).all() == []
        assert tag.posts == []
    assert [m[0] for m in events.m2m()] == ["pre_add"]  # no post_add ever follows


def test_m2m_rollback_forgets_unflushed_changes(wired: Engine, events: Events) -> None:
    with Session(wired) as session:
        post, tag = Post(title="p"), Tag(name="t")
        session.add_all([post, tag])
        session.commit()
        events.clear()
        post.tags.append(tag)
        session.rollback()
        assert post.tags == []
        session.commit()
    assert [m[0] for m in events.m2m()] == ["pre_add"]


# -- class_prepared, connection_created ---------------------------------------------------


def test_class_prepared_when_the_mapper_is_configured(events: Events) -> None:
    class Other(DeclarativeBase):
        pass

    connect_signals(Other)
    try:

        class Gadget(Other):
            __tablename__ = "gadgets"
            id: Mapped[int] = mapped_column(primary_key=True)

        assert events.of("class_prepared") == []
        configure_mappers()
        assert events.of("class_prepared") == [(Gadget, {})]
        configure_mappers()
        Gadget()
        assert [name for name in events.names() if name == "class_prepared"] == ["class_prepared"]
    finally:
        disconnect_signals(Other)


def test_connection_created_for_each_new_dbapi_connection(engine: Engine, events: Events) -> None:
    fresh = create_engine(engine.url)
    connect_signals(fresh, using="fresh")
    connect_signals(fresh, using="fresh")  # again: still one send per connection
    try:
        with fresh.connect() as conn:
            dbapi_connection = conn.connection.dbapi_connection
        with fresh.connect():
            pass  # the pooled connection again: nothing new
        assert events.of("connection_created") == [
            (type(fresh.dialect), {"connection": dbapi_connection, "using": "fresh"})
        ]
        if fresh.dialect.name == "sqlite":
            assert isinstance(dbapi_connection, sqlite3.Connection)
        fresh.dispose()
        with fresh.connect():
            pass
        assert len(events.of("connection_created")) == 2
    finally:
        disconnect_signals(fresh)
        fresh.dispose()
    try:
        with fresh.connect():
            pass
        assert len(events.of("connection_created")) == 2
    finally:
        fresh.dispose()


def test_using_defaults_to_the_url_without_password() -> None:
    eng = create_engine("postgresql+psycopg://app:s3cret@db.example/app")
    assert database_alias(eng) == "postgresql+psycopg://app:***@db.example/app"
    connect_signals(eng, using="primary")
    try:
        assert database_alias(eng) == "primary"
        with pytest.raises(ValueError, match="already wired as 'primary'"):
            connect_signals(eng, using="replica")
    finally:
        disconnect_signals(eng)
    assert "s3cret" not in database_alias(eng)


# -- wiring -------------------------------------------------------------------------------


def test_wiring_twice_or_overlapping_sends_once(engine: Engine, events: Events) -> None:
    connect_signals(Base, engine)
    connect_signals(Base)
    connect_signals(Post)  # inside Base: already covered
    try:
        with Session(engine) as session:
            post = Post(title="p")
            session.add(post)
            session.commit()
        assert events.names() == ["pre_init", "post_init", "pre_save", "post_save"]

        assert disconnect_signals(Post) is True  # Base still covers Post
        events.clear()
        Post(title="q")
        assert events.names() == ["pre_init", "post_init"]
    finally:
        disconnect_signals(Base, Post, engine)
    assert disconnect_signals(Base) is False


def test_a_mapper_or_mapped_class_wires_only_that_model(engine: Engine, events: Events) -> None:
    connect_signals(inspect(Tag))
    try:
        with Session(engine) as session:
            session.add_all([Post(title="p"), Tag(name="t")])
            session.commit()
        assert [(name, sender) for name, sender, _ in events.items] == [
            ("pre_init", Tag),
            ("post_init", Tag),
            ("pre_save", Tag),
            ("post_save", Tag),
        ]
    finally:
        assert disconnect_signals(Tag) is True  # the class undoes what its mapper did


def test_every_kind_of_session_sends_without_being_wired(wired: Engine, events: Events) -> None:
    class MySession(Session):
        pass

    makers: list[Any] = [
        sessionmaker(wired, class_=MySession),
        scoped_session(sessionmaker(wired)),
    ]
    for maker in makers:
        session = maker()
        post, tag, spare = Post(title="p"), Tag(name="t"), Tag(name="spare")
        session.add_all([post, tag, spare])
        session.commit()
        events.clear()
        post.tags.append(tag)
        session.commit()
        session.execute(delete(Tag).where(Tag.id == spare.id))
        session.commit()
        assert [m[0] for m in events.m2m()] == ["pre_add", "post_add"]
        assert [sender for sender, _ in events.of("pre_delete")] == [Tag]
        session.close()


def test_disconnect_restores_sqlalchemy(engine: Engine, events: Events) -> None:
    configure_mappers()
    original = manager_of_class(Post).original_init
    connect_signals(Base)
    assert manager_of_class(Post).original_init is not original
    assert disconnect_signals(Base) is True
    assert manager_of_class(Post).original_init is original

    with Session(engine) as session:
        post = Post(title="p")
        session.add(post)
        session.commit()
        post.tags.append(Tag(name="t"))
        session.commit()
        session.delete(post)
        session.commit()
    assert events.items == []


@pytest.mark.parametrize(
    "target",
    [
        42,
        "Base",
        object(),
        type("Plain", (), {}),
        Session,
        Session(),
        sessionmaker(),
        Base.metadata,
        post_tags,
    ],
    ids=lambda t: type(t).__name__,
)
def test_wrong_target_is_a_type_error_saying_what_is_accepted(target: Any) -> None:
    with pytest.raises(TypeError, match="declarative base class, a mapped class") as info:
        connect_signals(target)
    if isinstance(target, (Session, sessionmaker)) or target is Session:
        assert "Sessions need no wiring" in str(info.value)
    with pytest.raises(TypeError, match="declarative base class"):
        disconnect_signals(target)


def test_using_without_an_engine_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="no Engine was given"):
        connect_signals(Base, using="default")


# -- a receiver raising inside the flush ---------------------------------------------------


@pytest.mark.parametrize("signal", [pre_save, post_save, m2m_changed])
def test_receiver_raising_in_the_flush_rolls_everything_back(wired: Engine, signal: Signal) -> None:
    class Refused(Exception):
        pass

    def refuse(sender: Any, action: str = "post_add", **named: Any) -> None:
        if action == "post_add":
            raise Refused

    with Session(wired) as session:
        existing = Tag(name="existing")
        session.add(existing)
        session.commit()

    with signal.connected_to(refuse), Session(wired) as session:
        existing = session.scalars(select(Tag)).one()
        post = Post(title="p", tags=[existing])
        session.add_all([post, Tag(name="other")])
        with pytest.raises(Refused):
            session.commit()
        assert not session.is_active  # the failed flush rolled the transaction back
        session.rollback()

    with Session(wired) as session:
        assert count(session, Post) == 0
        assert [tag.name for tag in session.scalars(select(Tag))] == ["existing"]
        assert session.execute(select(post_tags)).all() == []
