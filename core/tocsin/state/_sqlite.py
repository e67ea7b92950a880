"""The embedded default: a SQLite file, with the standard library's :mod:`sqlite3`.

Nothing to install or run: every process on the machine opens the same file (a local
file system: SQLite's locking is not reliable over NFS).  The file and its tables are
created on first use, in WAL mode so that readers never wait for a writer.

The cheap check is ``PRAGMA data_version`` on the process's own connection: SQLite
answers it from the file's header without reading a table, and its value changes
exactly when another connection has committed.  Only then is the version row read.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tocsin.state._sql import CHANGES, STATE, VERSION, Run, SQLBackend

__all__ = ["SQLiteBackend"]

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {STATE} (
    name VARCHAR(200) NOT NULL PRIMARY KEY,
    enabled BOOLEAN NOT NULL,
    changed_at REAL NOT NULL,
    changed_by VARCHAR(200) NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {CHANGES} (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(200) NOT NULL,
    enabled BOOLEAN NULL,
    changed_at REAL NOT NULL,
    changed_by VARCHAR(200) NOT NULL,
    reason TEXT NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INTEGER NOT NULL,
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {VERSION} (
    id INTEGER NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT OR IGNORE INTO {VERSION} (id, version) VALUES (1, 0);
"""


class SQLiteBackend(SQLBackend):
    """The shared state in the SQLite file at *path* (created if missing; its folder
    must exist)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 2.0) -> None:
        super().__init__()
        self.path = os.path.abspath(os.fspath(path))
        self.description = f"sqlite:///{self.path}"
        self.timeout = timeout
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        """The process's connection (a new one after a fork: the parent's is left
        alone, as SQLite asks)."""
        if self._forked():
            self._connection = None
        connection = self._connection
        if connection is None:
            if not os.path.isdir(os.path.dirname(self.path)):
                raise FileNotFoundError(
                    f"the folder of {self.path} does not exist (the file is created, "
                    f"the folder is not)"
                )
            connection = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            try:
                if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("BEGIN IMMEDIATE")
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute("COMMIT")
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return connection

    def version(self) -> object:
        with self._lock:
            try:
                return self._connect().execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                self._drop()
                raise

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Run]:
        with self._lock:
            connection = self._connect()

            def run(sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
                used = {k: v for k, v in params.items() if f":{k}" in sql}
                rows: Sequence[Sequence[Any]] = connection.execute(sql, used).fetchall()
                return rows

            try:
                connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield run
            except BaseException:
                try:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                except sqlite3.Error:
                    self._drop()
                raise
            connection.execute("COMMIT")

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        with self._lock:
            if not self._forked():
                self._drop()
            self._connection = None
