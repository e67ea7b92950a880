"""The shared plugin state's tables (tocsin.state), and the version row."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations, models


def version_row(apps: Any, schema_editor: Any) -> None:
    version = apps.get_model("tocsin", "StateVersion")
    version.objects.using(schema_editor.connection.alias).get_or_create(
        id=1, defaults={"version": 0}
    )


class Migration(migrations.Migration):
    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[Any]] = [
        migrations.CreateModel(
            name="PluginState",
            fields=[
                ("name", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("enabled", models.BooleanField()),
                ("changed_at", models.FloatField(help_text="seconds since the epoch")),
                ("changed_by", models.CharField(max_length=200)),
                ("reason", models.TextField(blank=True)),
            ],
            options={
                "db_table": "tocsin_plugin_state",
                "ordering": ("name",),
                "verbose_name": "shared plugin switch",
                "verbose_name_plural": "shared plugin switches",
            },
        ),
        migrations.CreateModel(
            name="PluginStateChange",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(db_index=True, max_length=200)),
                (
                    "enabled",
                    models.BooleanField(help_text="empty: reset to the configuration", null=True),
                ),
                ("changed_at", models.FloatField()),
                ("changed_by", models.CharField(max_length=200)),
                ("reason", models.TextField(blank=True)),
                ("host", models.CharField(max_length=255)),
                ("pid", models.IntegerField()),
                ("version", models.BigIntegerField()),
            ],
            options={
                "db_table": "tocsin_plugin_change",
                "ordering": ("-id",),
                "verbose_name": "plugin switch change",
            },
        ),
        migrations.CreateModel(
            name="StateVersion",
            fields=[
                ("id", models.IntegerField(primary_key=True, serialize=False)),
                ("version", models.BigIntegerField()),
            ],
            options={"db_table": "tocsin_state_version"},
        ),
        migrations.RunPython(version_row, migrations.RunPython.noop),
    ]
