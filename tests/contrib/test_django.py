"""tocsin.contrib.django: a real Django project, a real plugin distribution.

The project (``djangoproject/``: settings, an app with a ManyToManyField, a migration,
views) runs in a child process per scenario (see ``bridge_helpers`` for why), with the
``tocsin-test-recorder`` distribution installed by pip into a temporary directory on
its path.  The plugin's receivers write what they get to a JSON lines file; the tests
read it.  The pytest process itself only uses ``django.dispatch`` (for ``mirror``),
which needs no settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django
import pytest

pytest.importorskip("django", reason="tocsin[django] needs Django")

import django.dispatch
from bridge_helpers import HERE, Run, build_plugin, run_child

from tocsin import Signal, TocsinError
from tocsin.contrib._plugins import plugin_options
from tocsin.contrib.django import mirror, unmirror
from tocsin.contrib.django.relay import RELAYED, make_relay
from tocsin.signals import user_login_failed

PROJECT = HERE / "djangoproject"
SCENARIO = PROJECT / "scenario.py"

#: Everything the six families send, in the catalogue's names.
ALL_SIGNALS = set(RELAYED)

RunDjango = Callable[..., Run]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_plugin(tmp_path_factory)


@pytest.fixture
def run_django(site: Path, tmp_path: Path) -> RunDjango:
    def run(*args: str, tocsin: Any = None, env: dict[str, str] | None = None) -> Run:
        child_env = {
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
            "TOCSIN_TEST_DB": str(tmp_path / "db.sqlite3"),
        }
        if tocsin is not None:
            child_env["TOCSIN_TEST_SETTINGS"] = json.dumps(tocsin)
        child_env.update(env or {})
        return run_child(
            SCENARIO,
            list(args),
            workdir=tmp_path,
            site=site,
            pythonpath=[PROJECT],
            env=child_env,
        )

    return run


@pytest.fixture(scope="module")
def full(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The whole scenario once: migrate, ORM, requests, auth, settings, mirror."""
    workdir = tmp_path_factory.mktemp("django-full")
    run = run_child(
        SCENARIO,
        ["full"],
        workdir=workdir,
        site=site,
        pythonpath=[PROJECT],
        env={
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
            "TOCSIN_TEST_DB": str(workdir / "db.sqlite3"),
            "TOCSIN_TEST_SETTINGS": json.dumps({"plugins": ["test-recorder", "test-project"]}),
        },
    )
    assert run.returncode == 0, run.stderr
    return run


def by_signal(events: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("signal") in names and e.get("by") == "test-recorder"]


# -- the full scenario ----------------------------------------------------------------


def test_every_relayed_signal_reaches_the_plugin(full: Run) -> None:
    received = {e["signal"] for e in full.events if e.get("by") == "test-recorder"}
    assert received >= ALL_SIGNALS
    assert full.report["plugins"]["test-recorder"]["enabled"]
    assert all("signal" not in e["keys"] for e in full.events if "keys" in e)


def test_migrate_sends_management_and_db_signals(full: Run) -> None:
    migrate = full.phases()["migrate"]
    connection = by_signal(migrate, "connection_created")
    assert connection[0]["sender"] == "type:django.db.backends.sqlite3.base.DatabaseWrapper"
    assert connection[0]["keys"] == ["connection"]
    for name in ("pre_migrate", "post_migrate"):
        sent = by_signal(migrate, name)
        assert [e["sender"] for e in sent] == [
            {"app": label} for label in ("tocsin", "auth", "contenttypes", "sessions", "blog")
        ]
        for event in sent:
            # Everything Django sends (5.2 adds stdout), as Django sends it.
            assert set(event["keys"]) >= {
                "app_config",
                "verbosity",
                "interactive",
                "using",
                "plan",
                "apps",
            }
            assert event["args"]["app_config"] == event["sender"]
            assert event["args"]["verbosity"] == 0
            assert event["args"]["interactive"] is False
            assert event["args"]["using"] == "default"
            assert event["args"]["apps"] == "obj:StateApps"
    # Historical models built by migrate are prepared while the plugin listens.
    assert any(
        e["sender"].startswith("type:__fake__.") for e in by_signal(migrate, "class_prepared")
    )


def test_saves_are_relayed_with_their_arguments(full: Run) -> None:
    orm = by_signal(full.phases()["orm"], "pre_save", "post_save")
    articles = [e for e in orm if e["sender"] == "type:blog.models.Article"]
    assert [
        (e["signal"], e["args"].get("created"), e["args"]["update_fields"]) for e in articles
    ] == [
        ("pre_save", None, None),
        ("post_save", True, None),
        ("pre_save", None, ["title"]),
        ("post_save", False, ["title"]),
    ]
    assert articles[1]["keys"] == ["created", "instance", "raw", "update_fields", "using"]
    assert articles[1]["args"]["instance"] == {"model": "Article", "pk": 1}
    assert articles[1]["args"]["raw"] is False
    assert articles[1]["args"]["using"] == "default"


def test_init_signals_are_relayed(full: Run) -> None:
    orm = full.phases()["orm"]
    pre = [e for e in by_signal(orm, "pre_init") if e["sender"] == "type:blog.models.Article"]
    assert pre[0]["args"] == {"args": [], "kwargs": {"title": "first"}}
    post = [e for e in by_signal(orm, "post_init") if e["sender"] == "type:blog.models.Article"]
    assert post[0]["args"] == {"instance": {"model": "Article", "pk": None}}


def test_m2m_changes_are_relayed(full: Run) -> None:
    changes = by_signal(full.phases()["orm"], "m2m_changed")
    assert {e["sender"] for e in changes} == {"type:blog.models.Article_tags"}
    assert [(e["args"]["action"], e["args"]["reverse"], e["args"]["model"]) for e in changes] == [
        ("pre_add", False, "type:blog.models.Tag"),
        ("post_add", False, "type:blog.models.Tag"),
        ("pre_remove", False, "type:blog.models.Tag"),
        ("post_remove", False, "type:blog.models.Tag"),
        ("pre_add", True, "type:blog.models.Article"),
        ("post_add", True, "type:blog.models.Article"),
    ]
    assert all(e["args"]["pk_set"] == [1] for e in changes)
    expected = ["action", "instance", "model", "pk_set", "reverse", "using"]
    if django.VERSION >= (6, 0):  # Django 6 added `raw` to m2m_changed; relayed as sent
        expected = sorted([*expected, "raw"])
    assert changes[0]["keys"] == expected


def test_deletes_are_relayed(full: Run) -> None:
    deletes = by_signal(full.phases()["orm"], "pre_delete", "post_delete")
    assert [(e["signal"], e["sender"], e["args"]["instance"]) for e in deletes] == [
        ("pre_delete", "type:blog.models.Tag", {"model": "Tag", "pk": 2}),
        ("post_delete", "type:blog.models.Tag", {"model": "Tag", "pk": 2}),
    ]
    assert set(deletes[0]["keys"]) >= {"instance", "using"}


def test_request_signals_are_relayed(full: Run) -> None:
    requests = by_signal(
        full.phases()["requests"], "request_started", "request_finished", "got_request_exception"
    )
    assert [(e["signal"], e["args"].get("PATH_INFO")) for e in requests] == [
        ("request_started", "/hello/"),
        ("request_finished", None),
        ("request_started", "/boom/"),
        ("got_request_exception", None),
        ("request_finished", None),
    ]
    assert requests[0]["sender"] == "type:django.test.client.ClientHandler"
    assert requests[0]["keys"] == ["environ"]
    failure = requests[3]
    assert failure["sender"] is None
    assert failure["args"]["request"] == {
        "request": "WSGIRequest",
        "method": "GET",
        "path": "/boom/",
    }
    assert failure["handling"] == "RuntimeError"  # sent inside Django's except block


def test_login_and_logout_are_relayed(full: Run) -> None:
    auth = full.phases()["auth"]
    (login,) = by_signal(auth, "user_logged_in")
    assert login["sender"] == "type:django.contrib.auth.models.User"
    assert login["args"]["user"] == {"model": "User", "pk": 1}
    assert login["args"]["request"]["path"] == "/login/"
    (logout,) = by_signal(auth, "user_logged_out")
    assert logout["sender"] == "type:django.contrib.auth.models.User"
    assert logout["args"]["request"]["path"] == "/logout/"
    # login() saves last_login through the ORM: relayed too.
    saves = [
        e for e in by_signal(auth, "post_save") if e["args"]["update_fields"] == ["last_login"]
    ]
    assert saves


def test_failed_login_credentials_are_masked(full: Run) -> None:
    (failed,) = by_signal(full.phases()["auth"], "user_login_failed")
    assert failed["sender"] == "django.contrib.auth"
    assert failed["args"]["request"]["path"] == "/login/"
    assert failed["args"]["credentials"] == {
        "username": "ada",
        "password": "********************",  # masked by Django already
        "api_token": "********************",  # masked by Django already
        "passcode": "********************",  # Django sends it in clear: tocsin masks it
    }
    raw = json.dumps(full.events)
    assert "wrong" not in raw
    assert "1234" not in raw
    assert "t0k3n" not in raw


def test_override_settings_is_relayed(full: Run) -> None:
    changes = by_signal(full.phases()["settings"], "setting_changed")
    assert [(e["args"]["setting"], e["args"]["value"], e["args"]["enter"]) for e in changes] == [
        ("TOCSIN_TEST_FLAG", "on", True),
        ("TOCSIN_TEST_FLAG", None, False),
    ]
    assert changes[0]["sender"] == "type:django.conf.UserSettingsHolder"


def test_override_settings_of_tocsin_switches_plugins(full: Run) -> None:
    events = by_signal(full.phases()["override-tocsin"], "setting_changed", "post_save")
    # The relay runs before the plugins are switched: the plugin hears the change that
    # disables it, not the one that enables it again; and not the save in between
    # (tags: news=1, gone=2, unheard=3, heard=4).
    assert [(e["signal"], e["args"].get("enter"), e["args"].get("instance")) for e in events] == [
        ("setting_changed", True, None),
        ("post_save", None, {"model": "Tag", "pk": 4}),
    ]
    assert events[0]["args"]["value"] == {"plugins": ["test-project"]}
    assert full.report["plugins"]["test-recorder"]["enabled"]


def test_class_prepared_is_relayed_from_app_config_init(full: Run) -> None:
    # A receiver connected before django.setup() sees the project's own models,
    # prepared before any ready() ran: the relay was connected in __init__.
    early = {e["sender"] for e in full.events if e.get("by") == "early"}
    assert {"Tag", "Article", "Article_tags", "User", "Session"} <= early
    # The plugin, loaded in ready(), sees the classes prepared after it.
    late = by_signal(full.phases()["class_prepared"], "class_prepared")
    assert [e["sender"] for e in late] == ["type:__main__.full.<locals>.Late"]


def test_mirrored_project_signal_reaches_plugin_and_django_receiver(full: Run) -> None:
    events = full.phases()["mirror"]
    assert {"by": "django-legacy", "signal": "article_published", "article": 1} in events
    (moved,) = [e for e in events if e.get("by") == "test-project"]
    assert moved["signal"] == "article_published"
    assert moved["sender"] == "type:blog.models.Article"
    assert moved["args"] == {"article": {"model": "Article", "pk": 1}}


def test_ready_twice_sends_once(full: Run) -> None:
    events = full.phases()["ready-twice"]
    assert [e["signal"] for e in by_signal(events, "pre_save", "post_save")] == [
        "pre_save",
        "post_save",
    ]
    assert full.imported() == {"test-recorder"}  # and no plugin imported twice


# -- TOCSIN settings ------------------------------------------------------------------


def plugin_state(run: Run, name: str) -> dict[str, Any]:
    state: dict[str, Any] = run.report["plugins"][name]
    return state


def test_disabled_plugin_is_never_imported(run_django: RunDjango) -> None:
    run = run_django(
        "plugins",
        tocsin={"plugins": ["test-extra", "test-forbidden"], "disabled": ["test-forbidden"]},
    )
    assert run.returncode == 0, run.stderr
    assert plugin_state(run, "test-forbidden") == {
        "enabled": False,
        "loaded": False,
        "error": None,
        "distribution": "tocsin-test-recorder",
    }
    assert plugin_state(run, "test-extra")["enabled"]
    assert run.imported() == {"test-extra"}
    assert "tocsin_test_recorder.forbidden" not in run.report["imported"]


def test_allow_list_enables_only_the_listed_plugins(run_django: RunDjango) -> None:
    run = run_django("plugins", tocsin={"plugins": ["test-extra"]})
    assert run.returncode == 0, run.stderr
    enabled = {name for name, state in run.report["plugins"].items() if state["enabled"]}
    assert enabled == {"test-extra"}
    assert {"test-recorder", "test-forbidden", "test-broken"} <= set(run.report["plugins"])
    # Only the allowed plugin's modules were imported, of any plugin distribution.
    assert run.report["imported"] == [
        "tocsin_test_recorder",
        "tocsin_test_recorder._record",
        "tocsin_test_recorder.extra",
    ]


def test_autoload_off_imports_nothing_until_enabled(run_django: RunDjango) -> None:
    run = run_django("plugins", tocsin={"autoload": False})
    assert run.returncode == 0, run.stderr
    assert run.imported() == set()
    assert run.report["imported"] == []
    assert not any(state["enabled"] for state in run.report["plugins"].values())

    enabled = run_django("plugins", "--enable", "test-extra", tocsin={"autoload": False})
    assert enabled.returncode == 0, enabled.stderr
    assert enabled.imported() == {"test-extra"}
    assert plugin_state(enabled, "test-extra")["enabled"]


def test_no_tocsin_setting_loads_with_the_defaults(run_django: RunDjango) -> None:
    # No settings.TOCSIN at all; the environment still has the last word.
    run = run_django("plugins", env={"TOCSIN_PLUGINS": "test-extra"})
    assert run.returncode == 0, run.stderr
    assert {n for n, s in run.report["plugins"].items() if s["enabled"]} == {"test-extra"}


def test_environment_overrides_the_setting(run_django: RunDjango) -> None:
    run = run_django(
        "plugins", tocsin={"plugins": ["test-recorder"]}, env={"TOCSIN_PLUGINS": "test-extra"}
    )
    assert run.returncode == 0, run.stderr
    assert run.imported() == {"test-extra"}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"plugins": [], "colour": "red"},
            "settings.TOCSIN has unknown key 'colour'; the known keys are "
            "'autoload', 'disabled', 'plugins', 'strict'.",
        ),
        (
            {"disabled": "test-extra"},
            "settings.TOCSIN['disabled'] must be a list of plugin names, not 'test-extra'.",
        ),
        ({"autoload": "yes"}, "settings.TOCSIN['autoload'] must be True or False, not 'yes'."),
        (["test-extra"], "settings.TOCSIN must be a dict"),
    ],
)
def test_bad_setting_is_improperly_configured(
    run_django: RunDjango, setting: Any, message: str
) -> None:
    run = run_django("plugins", tocsin=setting)
    assert run.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: " + message in run.stderr
    assert run.imported() == set()


def test_strict_setting_stops_startup_on_a_broken_plugin(run_django: RunDjango) -> None:
    run = run_django("plugins", tocsin={"plugins": ["test-broken"], "strict": True})
    assert run.returncode != 0
    assert "tocsin.PluginLoadError: Plugin 'test-broken'" in run.stderr
    assert "test-broken fails on import, on purpose" in run.stderr


def test_broken_plugin_is_isolated_without_strict(run_django: RunDjango) -> None:
    run = run_django("plugins", tocsin={"plugins": ["test-broken", "test-extra"]})
    assert run.returncode == 0, run.stderr
    assert "TocsinPluginWarning: Plugin 'test-broken'" in run.stderr
    assert "RuntimeError('test-broken fails on import, on purpose')" in str(
        plugin_state(run, "test-broken")["error"]
    )
    assert plugin_state(run, "test-extra")["enabled"]


def test_settings_apply_to_a_manager_created_earlier(run_django: RunDjango) -> None:
    run = run_django(
        "plugins",
        tocsin={"plugins": ["test-extra"]},
        env={"TOCSIN_TEST_TOUCH_MANAGER": "create"},
    )
    assert run.returncode == 0, run.stderr
    assert run.imported() == {"test-extra"}
    assert {n for n, s in run.report["plugins"].items() if s["enabled"]} == {"test-extra"}


def test_settings_reconcile_a_manager_loaded_earlier(run_django: RunDjango) -> None:
    # Loaded with the defaults (everything) while settings were read; settings.TOCSIN
    # then decides which stay enabled.  What was imported stays imported.
    run = run_django(
        "plugins",
        tocsin={"plugins": ["test-extra", "test-recorder"], "disabled": ["test-recorder"]},
        env={"TOCSIN_TEST_TOUCH_MANAGER": "load"},
    )
    assert run.returncode == 0, run.stderr
    assert {n for n, s in run.report["plugins"].items() if s["enabled"]} == {"test-extra"}
    assert plugin_state(run, "test-recorder")["loaded"]  # imported by the early load()
    assert not plugin_state(run, "test-recorder")["enabled"]


# -- in this process: mirror() and the relay, on real django.dispatch signals ---------


class Collector:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, sender: Any, **named: Any) -> str:
        self.calls.append((sender, named))
        return "ok"


class Shop:
    pass


def test_mirror_relays_sender_and_arguments() -> None:
    paid = django.dispatch.Signal()
    paid_tocsin = mirror(paid, name="shop.order_paid", providing_args=["order"])
    assert isinstance(paid_tocsin, Signal)
    assert paid_tocsin.name == "shop.order_paid"
    assert paid_tocsin.providing_args == ("order",)
    collect = Collector()
    legacy = Collector()
    paid.connect(legacy, weak=False)
    with paid_tocsin.connected_to(collect, sender=Shop):
        paid.send(sender=Shop, order=7)
        paid.send(sender=object(), order=8)  # filtered out by the tocsin sender filter
    assert collect.calls == [(Shop, {"signal": paid_tocsin, "order": 7})]
    assert [named["order"] for _, named in legacy.calls] == [7, 8]


def test_mirror_twice_sends_once_and_returns_the_same_signal() -> None:
    paid = django.dispatch.Signal()
    first = mirror(paid)
    assert mirror(paid) is first
    collect = Collector()
    with first.connected_to(collect):
        paid.send(sender=Shop)
    assert len(collect.calls) == 1
    assert len(paid.receivers) == 1


def test_mirror_to_an_existing_signal_and_unmirror() -> None:
    paid = django.dispatch.Signal()
    target = Signal(name="shop.paid")
    assert mirror(paid, target) is target
    collect = Collector()
    with target.connected_to(collect):
        paid.send(sender=Shop, order=1)
        assert unmirror(paid, target) is True
        assert unmirror(paid, target) is False
        paid.send(sender=Shop, order=2)
    assert [named["order"] for _, named in collect.calls] == [1]
    assert unmirror(django.dispatch.Signal()) is False


def test_mirror_rejects_what_it_cannot_mirror() -> None:
    with pytest.raises(TypeError, match=r"takes a django\.dispatch\.Signal"):
        mirror(Signal())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot be given with an existing tocsin_signal"):
        mirror(django.dispatch.Signal(), Signal(), name="x")


def test_mirror_relay_propagates_and_robust_calls_everyone() -> None:
    def fails(sender: Any, **named: Any) -> None:
        raise LookupError("receiver failed")

    for robust in (False, True):
        paid = django.dispatch.Signal()
        target = mirror(paid, Signal(name="shop.paid"), robust=robust)
        after = Collector()
        with target.connected_to(fails), target.connected_to(after):
            with pytest.raises(LookupError, match="receiver failed"):
                paid.send(sender=Shop)
            # Django's send_robust turns the relay's exception into its response.
            ((_, response),) = paid.send_robust(sender=Shop)
            assert isinstance(response, LookupError)
        assert len(after.calls) == (2 if robust else 0)


def test_relay_sends_only_when_tocsin_has_listeners() -> None:
    # user_login_failed's send() rejects credentials it cannot cleanse, before calling
    # anyone: so a relay that skips send() is seen not failing.
    django_signal = django.dispatch.Signal()
    django_signal.connect(make_relay(user_login_failed), weak=False)
    assert not user_login_failed.has_listeners("auth")
    django_signal.send(sender="auth", credentials="not a mapping")  # skipped
    with user_login_failed.connected_to(Collector(), sender="other"):
        django_signal.send(sender="auth", credentials="not a mapping")  # not for "auth"
    with (
        user_login_failed.connected_to(Collector(), sender="auth"),
        pytest.raises(TypeError, match="credentials must be a mapping"),
    ):
        django_signal.send(sender="auth", credentials="not a mapping")


def test_relay_of_user_login_failed_masks_again() -> None:
    django_signal = django.dispatch.Signal()
    django_signal.connect(make_relay(user_login_failed), weak=False)
    collect = Collector()
    with user_login_failed.connected_to(collect):
        django_signal.send(sender="auth", credentials={"username": "ada", "pin_passcode": "1"})
    ((_, named),) = collect.calls
    assert named["credentials"] == {"username": "ada", "pin_passcode": "********************"}


# -- settings checks, in this process (nothing is loaded) -----------------------------


def test_plugin_options_map_the_keys() -> None:
    options = plugin_options(
        {"autoload": True, "disabled": ("b", "a"), "plugins": ["c"], "strict": False}, "X"
    )
    assert options == {"autoload": True, "disabled": ["a", "b"], "allowed": ["c"], "strict": False}
    assert plugin_options(None, "X") == {}
    with pytest.raises(TocsinError, match=r"X has unknown keys 'a', 'b'"):
        plugin_options({"a": 1, "b": 2}, "X")
    with pytest.raises(ValueError, match=r"X\['plugins'\] must list plugin names"):
        plugin_options({"plugins": ["ok", ""]}, "X")


# -- relays connected only while tocsin listens ---------------------------------------


def test_relays_are_connected_only_while_a_tocsin_receiver_listens(
    run_django: RunDjango,
) -> None:
    run = run_django("lazy", tocsin={"autoload": False})
    assert run.returncode == 0, run.stderr
    states = run.report["lazy"]
    # Only what receivers got (a plugin's import is recorded, too).
    phases = {label: [e for e in events if "signal" in e] for label, events in run.phases().items()}
    lazy = [(e["signal"].rpartition(".")[2], e["sender"]) for e in run.events if "by" in e]

    def connected(label: str) -> set[str]:
        return {name for name, on in states[label].items() if on}

    # No tocsin receiver: Django's signals have no relay, and Django sees no receiver
    # of pre_init/post_init at all (its own shortcut for model instantiation).
    assert connected("idle") == set()
    assert states["idle:django-init-listeners"] == [False, False]
    assert phases["idle"] == []

    # A tocsin receiver connects its relay (only its own), and the events arrive.
    assert connected("listening") == {"pre_init", "request_started"}
    assert states["listening:django-init-listeners"] == [True, False]
    assert [(e["signal"].rpartition(".")[2], e["sender"]) for e in phases["listening"]] == [
        ("pre_init", "Article"),
        ("request_started", "ClientHandler"),
    ]

    # The last tocsin receiver gone, its relay is disconnected.
    assert connected("stopped") == set()
    assert states["stopped:django-init-listeners"] == [False, False]
    assert phases["stopped"] == []

    # A plugin's receivers (enabled through the manager) connect every relay they need.
    assert connected("plugin-enabled") >= {"pre_init", "post_init", "request_started"}
    heard = {e["signal"] for e in by_signal(phases["plugin-enabled"], *ALL_SIGNALS)}
    assert heard >= {"pre_init", "post_init", "request_started", "request_finished"}
    # The TOCSIN setting's receiver stays after the relay connected after it.
    assert states["setting_changed-order"] == [
        "tocsin.contrib.django.relay:setting_changed",
        "tocsin.contrib.django:TOCSIN",
    ]
    assert connected("connect-twice") == connected("plugin-enabled")
    init = by_signal(phases["connect-twice"], "pre_init", "post_init")
    assert [e["signal"] for e in init] == ["pre_init", "post_init"]  # once each

    assert connected("plugin-disabled") == set()
    assert phases["plugin-disabled"] == []

    # disconnect_relays also stops watching: a new tocsin receiver connects nothing.
    assert states["disconnected"] == 2
    assert connected("relays-off") == set()
    assert phases["relays-off"] == []
    # connect_relays again: connected at once, since a tocsin receiver is there.
    assert connected("relays-on") == {"pre_init"}
    assert [(e["signal"].rpartition(".")[2], e["sender"]) for e in phases["relays-on"]] == [
        ("pre_init", "Article"),
    ]
    assert lazy.count(("pre_init", "Article")) == 2
