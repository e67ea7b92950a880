"""The shared plugin state in Django's database (see :mod:`tocsin.state`).

The tables are those every SQL backend of :mod:`tocsin.state` uses, with the same names
and columns, so a Celery worker without Django can share them through SQLAlchemy.
Write them through :func:`tocsin.state.set_plugin_state` (or the admin), never with
``save()``: a write must also bump the version row, or no process notices it.
"""

from __future__ import annotations

from django.db import models

__all__ = ["PluginState", "PluginStateChange", "StateVersion"]


class PluginState(models.Model):
    """A plugin an operator switched on or off, for every process."""

    name: models.CharField[str, str] = models.CharField(max_length=200, primary_key=True)
    enabled: models.BooleanField[bool, bool] = models.BooleanField()
    changed_at: models.FloatField[float, float] = models.FloatField(
        help_text="seconds since the epoch"
    )
    changed_by: models.CharField[str, str] = models.CharField(max_length=200)
    reason: models.TextField[str, str] = models.TextField(blank=True)

    class Meta:
        db_table = "tocsin_plugin_state"
        ordering = ("name",)
        verbose_name = "shared plugin switch"
        verbose_name_plural = "shared plugin switches"

    def __str__(self) -> str:
        return f"{self.name}: {'enabled' if self.enabled else 'disabled'}"


class PluginStateChange(models.Model):
    """The audit trail: every switch, who made it, when, why and from where."""

    id: models.AutoField[int, int] = models.AutoField(primary_key=True)
    name: models.CharField[str, str] = models.CharField(max_length=200, db_index=True)
    enabled: models.BooleanField[bool | None, bool | None] = models.BooleanField(
        null=True, help_text="empty: reset to the configuration"
    )
    changed_at: models.FloatField[float, float] = models.FloatField()
    changed_by: models.CharField[str, str] = models.CharField(max_length=200)
    reason: models.TextField[str, str] = models.TextField(blank=True)
    host: models.CharField[str, str] = models.CharField(max_length=255)
    pid: models.IntegerField[int, int] = models.IntegerField()
    version: models.BigIntegerField[int, int] = models.BigIntegerField()

    class Meta:
        db_table = "tocsin_plugin_change"
        ordering = ("-id",)
        verbose_name = "plugin switch change"

    def __str__(self) -> str:
        what = {True: "enabled", False: "disabled", None: "reset"}[self.enabled]
        return f"{self.name} {what} by {self.changed_by}"


class StateVersion(models.Model):
    """One row (id 1): the version every write increases, which processes poll."""

    id: models.IntegerField[int, int] = models.IntegerField(primary_key=True)
    version: models.BigIntegerField[int, int] = models.BigIntegerField()

    class Meta:
        db_table = "tocsin_state_version"
