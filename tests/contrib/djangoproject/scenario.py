"""Drive the test project in this process; run by tests/contrib/test_django.py.

    python scenario.py full               # everything the bridge relays, phase by phase
    python scenario.py plugins [--enable NAME]   # start Django, report the plugins
    python scenario.py lazy               # relays connected only while tocsin listens

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


def relay_states() -> dict[str, bool]:
    """Whether each relay is among its Django signal's receivers right now."""
    from tocsin.contrib.django.relay import relays

    return {
        name: any(entry[0][0] == relay.dispatch_uid for entry in relay.django_signal.receivers)
        for name, relay in relays().items()
    }


def lazy() -> dict[str, Any]:
    """With settings.TOCSIN = {"autoload": False}: no tocsin receiver at first."""
    import django
    from django.core.signals import setting_changed
    from django.db.models.signals import post_init, pre_init
    from django.test import Client

    import tocsin
    from tocsin.contrib.django.relay import connect_relays, disconnect_relays
    from tocsin.signals import request_started

    def record(sender: Any, signal: Any, **named: Any) -> None:
        entry = {"by": "lazy", "signal": signal.name, "sender": sender.__name__}
        with open(os.environ["TOCSIN_TEST_RECORD"], "a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")

    django.setup()
    from blog.models import Article

    states: dict[str, Any] = {}
    client = Client()

    def exercise(label: str) -> None:
        phase(label)
        Article(title="x")
        assert client.get("/hello/").status_code == 200
        states[label] = relay_states()
        states[label + ":django-init-listeners"] = [
            pre_init.has_listeners(Article),
            post_init.has_listeners(Article),
        ]

    exercise("idle")

    tocsin.signals.pre_init.connect(record, sender=Article)
    request_started.connect(record)
    exercise("listening")

    tocsin.signals.pre_init.disconnect(record, sender=Article)
    request_started.disconnect(record)
    exercise("stopped")

    tocsin.plugins.enable("test-recorder")
    exercise("plugin-enabled")
    states["setting_changed-order"] = [
        entry[0][0] for entry in setting_changed.receivers if isinstance(entry[0][0], str)
    ]
    connect_relays()  # again, all of them: nothing is connected or relayed twice
    exercise("connect-twice")

    tocsin.plugins.disable("test-recorder")
    exercise("plugin-disabled")

    states["disconnected"] = disconnect_relays(["pre_init", "request_started"])
    tocsin.signals.pre_init.connect(record, sender=Article)
    exercise("relays-off")  # disconnect_relays stopped the watchers too

    connect_relays(["pre_init", "request_started"])
    exercise("relays-on")  # the tocsin receiver connected meanwhile is served at once
    return states


def main(argv: list[str]) -> None:
    if argv[:1] == ["full"]:
        full()
    elif argv[:1] == ["plugins"]:
        plugins(argv[1:])
    elif argv[:1] == ["lazy"]:
        states = lazy()
        print(json.dumps({**report(), "lazy": states}))
        return
    else:
        raise SystemExit(f"usage: scenario.py full | plugins [--enable NAME] | lazy; got {argv}")
    print(json.dumps(report()))


if __name__ == "__main__":
    main(sys.argv[1:])
