"""Configure Django on a SQLite file (worker and sender alike)."""

from __future__ import annotations


def configure(path: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["tocsin_celery_testplugin.djangoapp"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": path}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
    )
    django.setup()
