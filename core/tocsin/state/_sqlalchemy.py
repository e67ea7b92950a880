"""The shared state in any database SQLAlchemy reaches (``pip install tocsin[sqlalchemy]``
and the database's driver: PostgreSQL with psycopg, MySQL, ...).

The tables of :mod:`tocsin.state._sql` are created on first use if missing (the same
tables ``tocsin.contrib.django``'s migration creates).  The cheap check reads the
version row: one indexed single-row ``SELECT`` per interval per process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tocsin.state._sql import CHANGES, STATE, VERSION, Run, SQLBackend

__all__ = ["SQLAlchemyBackend"]


class SQLAlchemyBackend(SQLBackend):
    """The shared state in the database at SQLAlchemy URL *url*, or through *engine*."""

    def __init__(self, url: str | None = None, *, engine: Any = None, timeout: float = 2.0) -> None:
        super().__init__()
        import sqlalchemy as sa

        if engine is None:
            if url is None:
                raise TypeError("SQLAlchemyBackend needs a URL or an engine.")
            connect_args: dict[str, Any] = {}
            if sa.engine.make_url(url).get_backend_name() == "postgresql":
                connect_args["connect_timeout"] = max(1, int(timeout))
            engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        self.engine = engine
        self.description = engine.url.render_as_string(hide_password=True)
        self._sa = sa
        self._created = False
        metadata = sa.MetaData()
        sa.Table(
            STATE,
            metadata,
            sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("enabled", sa.Boolean, nullable=False),
            sa.Column("changed_at", sa.Float, nullable=False),
            sa.Column("changed_by", sa.String(200), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
        )
        sa.Table(
            CHANGES,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(200), nullable=False, index=True),
            sa.Column("enabled", sa.Boolean, nullable=True),
            sa.Column("changed_at", sa.Float, nullable=False),
            sa.Column("changed_by", sa.String(200), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("version", sa.BigInteger, nullable=False),
        )
        self._version_table = sa.Table(
            VERSION,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("version", sa.BigInteger, nullable=False),
        )
        self._metadata = metadata

    def _engine(self) -> Any:
        if self._forked():
            self.engine.dispose(close=False)  # the parent's connections stay the parent's
        if not self._created:
            self._create()
        return self.engine

    def _create(self) -> None:
        sa = self._sa
        self._metadata.create_all(self.engine, checkfirst=True)
        with self.engine.begin() as connection:
            exists = connection.execute(sa.text(f"SELECT 1 FROM {VERSION} WHERE id = 1")).first()
            if exists is None:
                try:
                    with connection.begin_nested():
                        connection.execute(self._version_table.insert(), {"id": 1, "version": 0})
                except sa.exc.IntegrityError:
                    pass  # another process inserted it first
        self._created = True

    def version(self) -> object:
        with self._engine().connect() as connection:
            return connection.execute(
                self._sa.text(f"SELECT version FROM {VERSION} WHERE id = 1")
            ).scalar()

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Run]:
        text = self._sa.text
        with self._engine().begin() as connection:

            def run(sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
                used = {k: v for k, v in params.items() if f":{k}" in sql}
                result = connection.execute(text(sql), used)
                return list(result) if result.returns_rows else []

            yield run

    def close(self) -> None:
        self.engine.dispose()
