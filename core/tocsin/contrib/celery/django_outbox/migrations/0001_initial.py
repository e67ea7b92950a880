"""The outbox table of deferred receivers, ``tocsin_outbox`` (the columns and index of
the Alembic revision ``tocsin_outbox_0001``)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations, models

from tocsin.contrib.celery.django_outbox.models import UTCDateTimeField


class Migration(migrations.Migration):
    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[Any]] = [
        migrations.CreateModel(
            name="OutboxMessage",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("message_id", models.CharField(max_length=64, unique=True)),
                ("task_name", models.CharField(max_length=200)),
                ("envelope", models.TextField()),
                ("options", models.TextField()),
                ("created", UTCDateTimeField()),
                ("attempts", models.IntegerField(default=0)),
                ("next_attempt_at", UTCDateTimeField()),
                ("claimed_by", models.CharField(max_length=200, null=True)),
                ("claimed_until", UTCDateTimeField(null=True)),
                ("published_at", UTCDateTimeField(null=True)),
            ],
            options={
                "db_table": "tocsin_outbox",
                "verbose_name": "outbox message",
                "indexes": [
                    models.Index(
                        fields=["published_at", "next_attempt_at"],
                        name="ix_tocsin_outbox_pending",
                    )
                ],
            },
        ),
    ]
