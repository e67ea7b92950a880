"""The shared plugin state in Django's database: ``TOCSIN_STATE = "django"``.

With ``tocsin.contrib.django`` in ``INSTALLED_APPS`` and its migration applied, the
URL ``django`` (the ``default`` database) or ``django:ALIAS`` names the tables of
:mod:`tocsin.contrib.django.models`.  Set it in the environment (``TOCSIN_STATE``), or
as the ``TOCSIN_STATE`` Django setting (the code's level: the environment wins).  The
cheap check reads the version row.  The admin (``django.contrib.admin``) lists the
switches and their audit trail, and toggles plugins (see
:mod:`tocsin.contrib.django.admin`).

Importing this module needs the app registry ready: the app's ``ready()`` does it.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.db.models import F

from tocsin.contrib.django.models import PluginState, PluginStateChange, StateVersion
from tocsin.state import Backend, Change, PluginSwitch, check_name, register_scheme

__all__ = ["DjangoBackend"]


class DjangoBackend(Backend):
    """The shared state in the Django database *alias*."""

    def __init__(self, alias: str = "default") -> None:
        super().__init__()
        self.alias = alias
        self.description = f"django database {alias!r}"

    def _done(self) -> None:
        """Drop a connection that broke, outside any transaction (the background thread
        has a connection of its own, which Django's request cycle never tidies)."""
        connection = connections[self.alias]
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()

    def version(self) -> int | None:
        try:
            row = StateVersion.objects.using(self.alias).filter(pk=1).first()
            return None if row is None else row.version
        except DatabaseError as error:
            raise DatabaseError(f"{error} (has `manage.py migrate tocsin` run?)") from error
        finally:
            self._done()

    def read(self) -> tuple[int, dict[str, PluginSwitch]]:
        try:
            with transaction.atomic(using=self.alias):
                version = self.version() or 0
                rows = list(PluginState.objects.using(self.alias).all())
        finally:
            self._done()
        return int(version), {
            row.name: PluginSwitch(
                row.name, row.enabled, row.changed_at, row.changed_by, row.reason
            )
            for row in rows
        }

    def _record(self, name: str, enabled: bool | None, reason: str, who: str) -> Change:
        check_name(name)
        values: dict[str, Any] = {
            "name": name,
            "enabled": enabled,
            "changed_at": time.time(),
            "changed_by": who,
            "reason": reason,
        }
        try:
            with transaction.atomic(using=self.alias):
                versions = StateVersion.objects.using(self.alias)
                versions.get_or_create(pk=1, defaults={"version": 0})
                versions.filter(pk=1).update(version=F("version") + 1)
                version = versions.select_for_update().get(pk=1).version
                PluginState.objects.using(self.alias).filter(name=name).delete()
                if enabled is not None:
                    PluginState.objects.using(self.alias).create(**values)
                values.update(host=socket.gethostname(), pid=os.getpid(), version=version)
                PluginStateChange.objects.using(self.alias).create(**values)
        finally:
            self._done()
        return Change(**values)

    def write(self, name: str, enabled: bool, reason: str, who: str) -> Change:
        return self._record(name, bool(enabled), reason, who)

    def forget(self, name: str, reason: str, who: str) -> Change | None:
        return self._record(name, None, reason, who)

    def history(self, name: str | None = None, limit: int = 100) -> list[Change]:
        rows = PluginStateChange.objects.using(self.alias).order_by("-id")
        if name is not None:
            rows = rows.filter(name=name)
        try:
            return [
                Change(
                    r.name,
                    r.enabled,
                    r.changed_at,
                    r.changed_by,
                    r.reason,
                    r.host,
                    r.pid,
                    r.version,
                )
                for r in rows[:limit]
            ]
        finally:
            self._done()


def _open(url: str) -> Backend:
    return DjangoBackend(url.partition(":")[2].strip("/") or "default")


register_scheme("django", _open)
