"""Receivers of the audit-sqlite plugin.

The trail goes to the SQLite file named by ``TOCSIN_AUDIT_DB`` (default
``tocsin-audit.sqlite3`` in the working directory), in one table, ``audit``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import datetime, timezone
from typing import Any

import tocsin
from tocsin.signals import post_save, user_logged_in, user_logged_out

_lock = threading.Lock()


def database_path() -> str:
    return os.environ.get("TOCSIN_AUDIT_DB", "tocsin-audit.sqlite3")


def _record(event: str, subject: str, detail: str = "") -> None:
    with _lock, sqlite3.connect(database_path()) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS audit ("
            " id INTEGER PRIMARY KEY, at TEXT NOT NULL, event TEXT NOT NULL,"
            " subject TEXT NOT NULL, detail TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO audit (at, event, subject, detail) VALUES (?, ?, ?, ?)",
            (datetime.now(timezone.utc).isoformat(), event, subject, detail),
        )


def trail() -> list[tuple[str, str, str]]:
    """Every (event, subject, detail) recorded so far, oldest first."""
    if not os.path.exists(database_path()):
        return []
    with sqlite3.connect(database_path()) as db:
        return list(db.execute("SELECT event, subject, detail FROM audit ORDER BY id"))


def _name_of(user: Any) -> str:
    return str(getattr(user, "username", None) or user)


@tocsin.receiver(user_logged_in, dispatch_uid="audit-sqlite:login")
def record_login(sender: Any, user: Any, **kwargs: Any) -> None:
    _record("login", _name_of(user))


@tocsin.receiver(user_logged_out, dispatch_uid="audit-sqlite:logout")
def record_logout(sender: Any, user: Any, **kwargs: Any) -> None:
    _record("logout", _name_of(user) if user is not None else "anonymous")


@tocsin.receiver(post_save, dispatch_uid="audit-sqlite:save")
def record_save(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    model = getattr(sender, "__name__", str(sender))
    _record("create" if created else "update", f"{model} {getattr(instance, 'pk', '')}".strip())
