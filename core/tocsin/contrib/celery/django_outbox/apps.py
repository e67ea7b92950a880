"""The Django app of the outbox: ``"tocsin.contrib.celery.django_outbox"`` in
``INSTALLED_APPS``, then ``manage.py migrate tocsin_outbox``."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["TocsinOutboxConfig"]


class TocsinOutboxConfig(AppConfig):
    name = "tocsin.contrib.celery.django_outbox"
    label = "tocsin_outbox"
    verbose_name = "tocsin outbox"
    default_auto_field = "django.db.models.AutoField"
