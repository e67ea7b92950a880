"""What the SQL backends share: three tables, and the statements that use them.

The tables (the same names and columns in SQLite, through SQLAlchemy and in Django's
migration, so that a Django site and a worker without Django can share one database)::

    tocsin_plugin_state   name PK, enabled, changed_at, changed_by, reason
    tocsin_plugin_change  id PK, name, enabled (NULL: reset), changed_at, changed_by,
                          reason, host, pid, version        -- the audit trail
    tocsin_state_version  id PK (always 1), version         -- bumped by every write

A write updates the version row first, which takes the database's write lock (SQLite)
or the row's lock (PostgreSQL, MySQL), so concurrent writers are serialised and each
change gets its own version number.  The statements use ``:name`` parameters, which
both :mod:`sqlite3` and SQLAlchemy's ``text()`` understand.
"""

from __future__ import annotations

import os
import socket
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from tocsin.state._backend import Backend, Change, PluginSwitch, check_name, now

__all__ = ["SQLBackend"]

STATE = "tocsin_plugin_state"
CHANGES = "tocsin_plugin_change"
VERSION = "tocsin_state_version"

Run = Callable[[str, dict[str, Any]], Sequence[Sequence[Any]]]

SELECT_VERSION = f"SELECT version FROM {VERSION} WHERE id = 1"
BUMP_VERSION = f"UPDATE {VERSION} SET version = version + 1 WHERE id = 1"
SELECT_STATE = f"SELECT name, enabled, changed_at, changed_by, reason FROM {STATE}"
DELETE_STATE = f"DELETE FROM {STATE} WHERE name = :name"
INSERT_STATE = (
    f"INSERT INTO {STATE} (name, enabled, changed_at, changed_by, reason) "
    f"VALUES (:name, :enabled, :changed_at, :changed_by, :reason)"
)
INSERT_CHANGE = (
    f"INSERT INTO {CHANGES} (name, enabled, changed_at, changed_by, reason, host, pid, version) "
    f"VALUES (:name, :enabled, :changed_at, :changed_by, :reason, :host, :pid, :version)"
)
SELECT_CHANGES = (
    f"SELECT name, enabled, changed_at, changed_by, reason, host, pid, version FROM {CHANGES}"
)


class SQLBackend(Backend):
    """A backend over a SQL database; subclasses give :meth:`transaction`."""

    @abstractmethod
    def transaction(self, write: bool) -> AbstractContextManager[Run]:
        """A transaction (taking the write lock at once if *write*) and a function
        running one statement in it, returning its rows."""

    def read(self) -> tuple[int, dict[str, PluginSwitch]]:
        with self.transaction(False) as run:
            version = int(run(SELECT_VERSION, {})[0][0])
            rows = run(SELECT_STATE, {})
        return version, {
            row[0]: PluginSwitch(row[0], bool(row[1]), float(row[2]), row[3], row[4])
            for row in rows
        }

    def write(self, name: str, enabled: bool, reason: str, who: str) -> Change:
        check_name(name)
        return self._record(name, bool(enabled), reason, who)

    def forget(self, name: str, reason: str, who: str) -> Change | None:
        check_name(name)
        return self._record(name, None, reason, who)

    def _record(self, name: str, enabled: bool | None, reason: str, who: str) -> Change:
        values: dict[str, Any] = {
            "name": name,
            "enabled": enabled,
            "changed_at": now(),
            "changed_by": who,
            "reason": reason,
        }
        with self.transaction(True) as run:
            run(BUMP_VERSION, {})
            version = int(run(SELECT_VERSION, {})[0][0])
            run(DELETE_STATE, {"name": name})
            if enabled is not None:
                run(INSERT_STATE, values)
            values.update(host=socket.gethostname(), pid=os.getpid(), version=version)
            run(INSERT_CHANGE, values)
        return Change(**values)

    def history(self, name: str | None = None, limit: int = 100) -> list[Change]:
        where = " WHERE name = :name" if name is not None else ""
        query = f"{SELECT_CHANGES}{where} ORDER BY id DESC LIMIT {int(limit)}"
        with self.transaction(False) as run:
            rows = run(query, {"name": name})
        return [_change(row) for row in rows]


def _change(row: Sequence[Any]) -> Change:
    enabled = None if row[1] is None else bool(row[1])
    return Change(row[0], enabled, float(row[2]), row[3], row[4], row[5], int(row[6]), int(row[7]))


def rows_of(iterator: Iterator[Sequence[Any]] | None) -> list[Sequence[Any]]:
    return [] if iterator is None else list(iterator)
