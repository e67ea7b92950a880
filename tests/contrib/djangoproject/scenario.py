"""Drive the test project in this process; run by tests/contrib/test_django.py.

    python scenario.py full               # everything the bridge relays, phase by phase
    python scenario.py plugins [--enable NAME]   # start Django, report the plugins

Phase markers (``{"phase": ...}``) go into $TOCSIN_TEST_RECORD between the entries the
plugins write, and a JSON report of the plugin manager is printed last on stdout.
Warnings are errors, as in the test suite, except tocsin's plugin warnings, which are
printed to stderr for the tests to read.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

warnings.simplefilter("error")

from tocsin import TocsinPluginWarning  # noqa: E402 - after the warnings filter

warnings.simplefilter("default", TocsinPluginWarning)

PLUGIN_PACKAGES = (
    "tocsin_test_recorder",
    "tocsin_signal_counter",
    "tocsin_audit_sqlite",
    "tocsin_legacy_greeter",
)


def phase(name: str) -> None:
    with open(os.environ["TOCSIN_TEST_RECORD"], "a", encoding="utf-8") as file:
        file.write(json.dumps({"phase": name}) + "\n")


def report() -> dict[str, Any]:
    import tocsin

    plugins = {
        name: {
            "enabled": info.enabled,
            "loaded": info.loaded,
            "error": None if info.error is None else repr(info.error),
            "distribution": info.distribution,
        }
        for name, info in tocsin.plugins.items()
    }
    imported = sorted(name for name in sys.modules if name.split(".")[0] in PLUGIN_PACKAGES)
    return {"plugins": plugins, "imported": imported}


def full() -> None:
    import django
    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import models
    from django.test import Client, override_settings

    from tocsin.signals import class_prepared

    def early(sender: Any, **named: Any) -> None:
        entry = {"by": "early", "signal": "class_prepared", "sender": sender.__qualname__}
        with open(os.environ["TOCSIN_TEST_RECORD"], "a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")

    # Connected before Django populates its registry: it sees the project's own model
    # classes prepared, through the relay the app connects in AppConfig.__init__.
    class_prepared.connect(early, weak=False)

    phase("setup")
    django.setup()

    phase("migrate")
    call_command("migrate", verbosity=0, interactive=False)

    from blog.models import Article, Tag
    from blog.signals import article_published

    phase("orm")
    news = Tag.objects.create(name="news")
    article = Article(title="first")
    article.save()
    article.title = "first, edited"
    article.save(update_fields=["title"])
    article.tags.add(news)
    article.tags.remove(news)
    news.articles.add(article)
    Tag.objects.create(name="gone").delete()

    phase("requests")
    client = Client(raise_request_exception=False)
    assert client.get("/hello/").status_code == 200
    assert client.get("/boom/").status_code == 500

    phase("auth")
    get_user_model().objects.create_user("ada", password="correct horse")
    assert client.post("/login/", {"username": "ada", "password": "correct horse"}).content == b"ok"
    assert client.get("/logout/").content == b"bye"
    failed = client.post(
        "/login/",
        {"username": "ada", "password": "wrong", "passcode": "1234", "api_token": "t0k3n"},
    )
    assert failed.status_code == 401

    phase("settings")
    with override_settings(TOCSIN_TEST_FLAG="on"):
        pass

    phase("override-tocsin")
    with override_settings(TOCSIN={"plugins": ["test-project"]}):
        Tag.objects.create(name="unheard")  # test-recorder is disabled here
    Tag.objects.create(name="heard")

    phase("class_prepared")

    class Late(models.Model):
        class Meta:
            app_label = "blog"

    phase("mirror")
    article_published.send(sender=Article, article=article)

    phase("ready-twice")
    apps.get_app_config("tocsin").ready()
    Tag.objects.create(name="once")
    phase("end")


def plugins(argv: list[str]) -> None:
    import django

    django.setup()
    if argv[:1] == ["--enable"]:
        import tocsin

        tocsin.plugins.enable(argv[1])


def main(argv: list[str]) -> None:
    if argv[:1] == ["full"]:
        full()
    elif argv[:1] == ["plugins"]:
        plugins(argv[1:])
    else:
        raise SystemExit(f"usage: scenario.py full | plugins [--enable NAME]; got {argv}")
    print(json.dumps(report()))


if __name__ == "__main__":
    main(sys.argv[1:])
