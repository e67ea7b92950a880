"""tocsin.contrib.flask: a real Flask app and test client, a real plugin distribution.

The application (``flaskproject/scenario.py``) runs in a child process (see
``bridge_helpers`` for why), with and without Flask-Login, and loads the
``tocsin-test-recorder`` plugin from ``app.config["TOCSIN"]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

flask = pytest.importorskip("flask", reason="tocsin[flask] needs Flask")

from bridge_helpers import HERE, Run, build_plugin, run_child  # noqa: E402

from tocsin import PluginConfigError  # noqa: E402
from tocsin.contrib import flask as tocsin_flask  # noqa: E402
from tocsin.contrib.flask import Tocsin  # noqa: E402

SCENARIO = HERE / "flaskproject" / "scenario.py"
SETTINGS = {"plugins": ["test-recorder"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_plugin(tmp_path_factory)


def run_flask(site: Path, workdir: Path, *args: str, settings: Any = SETTINGS) -> Run:
    run = run_child(
        SCENARIO,
        ["full", *args],
        workdir=workdir,
        site=site,
        pythonpath=[],
        env={"TOCSIN_TEST_SETTINGS": json.dumps(settings)},
    )
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def with_login(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    pytest.importorskip(
        "flask_login", reason="Flask-Login is not installed: pip install flask-login"
    )
    return run_flask(site, tmp_path_factory.mktemp("flask-login"))


@pytest.fixture(scope="module")
def without_login(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_flask(site, tmp_path_factory.mktemp("flask-plain"), "--without-flask-login")


def recorded(events: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("by") == "test-recorder" and e.get("signal") in names]


REQUEST_SIGNALS = ("request_started", "request_finished", "got_request_exception")


@pytest.mark.parametrize("variant", ["with_login", "without_login"])
def test_request_signals_reach_the_plugin(variant: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(variant)
    events = recorded(run.phases()["requests"], *REQUEST_SIGNALS)
    assert [e["signal"] for e in events] == [
        "request_started",
        "request_finished",
        "request_started",
        "got_request_exception",
        "request_finished",
    ]  # init_app ran twice: each is relayed once
    assert {e["sender"] for e in events} == {"obj:Flask"}
    started, finished, _, failure, failed_finish = events
    assert started["keys"] == ["environ"]
    assert started["args"] == {"PATH_INFO": "/hello"}
    assert finished["args"] == {"response": {"response": "Response", "status": 200}}
    assert failure["keys"] == ["exception", "request"]
    assert failure["args"]["exception"] == {
        "exception": "RuntimeError",
        "message": "boom, on purpose",
    }
    assert failure["args"]["request"] == {"request": "Request", "method": "GET", "path": "/boom"}
    assert failure["handling"] == "RuntimeError"  # sent inside Flask's except block
    assert failed_finish["args"]["response"]["status"] == 500


@pytest.mark.parametrize("variant", ["with_login", "without_login"])
def test_only_the_initialised_app_is_relayed(variant: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(variant)
    assert recorded(run.phases()["other-app"], *REQUEST_SIGNALS) == []


@pytest.mark.parametrize("variant", ["with_login", "without_login"])
def test_plugins_come_from_app_config(variant: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(variant)
    enabled = {name for name, on in run.report["plugins"].items() if on}
    assert enabled == {"test-recorder"}
    assert run.imported() == {"test-recorder"}
    assert run.report["same_manager"] is True
    assert run.report["extension"] == "Tocsin"


def test_without_flask_login_nothing_of_it_is_relayed(without_login: Run) -> None:
    assert without_login.report["relays_flask_login"] is False
    assert "auth" not in without_login.phases()


def test_flask_login_login_and_logout(with_login: Run) -> None:
    assert with_login.report["relays_flask_login"] is True
    auth = with_login.phases()["auth"]
    (login,) = recorded(auth, "user_logged_in")
    assert login["sender"] == "type:__main__.create_app.<locals>.User"
    assert login["keys"] == ["app", "request", "user"]
    assert login["args"]["user"] == {"user": "User", "id": "ada"}
    assert login["args"]["request"]["path"] == "/login"
    assert login["args"]["app"] == "obj:Flask"
    (logout,) = recorded(auth, "user_logged_out")
    assert logout["sender"] == login["sender"]
    assert logout["args"]["user"] == {"user": "User", "id": "ada"}
    assert logout["args"]["request"]["path"] == "/logout"


def test_failed_login_reported_by_the_view_is_masked(with_login: Run) -> None:
    (failed,) = recorded(with_login.phases()["auth"], "user_login_failed")
    assert failed["args"]["credentials"] == {
        "username": "ada",
        "password": "********************",
        "api_key": "********************",
    }
    assert "wrong" not in json.dumps(with_login.events)
    assert "k3y" not in json.dumps(with_login.events)


def test_disabled_plugin_from_app_config_is_not_imported(site: Path, tmp_path: Path) -> None:
    run = run_flask(
        site,
        tmp_path,
        "--without-flask-login",
        settings={"plugins": ["test-recorder", "test-forbidden"], "disabled": ["test-forbidden"]},
    )
    assert run.imported() == {"test-recorder"}
    assert run.report["plugins"]["test-forbidden"] is False


def test_bad_config_raises_before_anything_is_connected() -> None:
    app = flask.Flask("bad")
    app.config["TOCSIN"] = {"plugins": ["x"], "autolaod": True}
    with pytest.raises(PluginConfigError, match=r"has unknown key 'autolaod'"):
        Tocsin(app)
    assert "tocsin" not in app.extensions
    relay = tocsin_flask._on_request_started
    assert relay not in list(flask.signals.request_started.receivers_for(app))


# -- relays connected only while tocsin listens (in this process, no plugin) ----------


def relay_connected(app: Any, blinker_signal: Any, relay: Any) -> bool:
    return relay in list(blinker_signal.receivers_for(app))


def test_relays_are_connected_only_while_a_tocsin_receiver_listens() -> None:
    from tocsin.signals import got_request_exception, request_finished, request_started

    app = flask.Flask("lazy")
    app.config.update(PROPAGATE_EXCEPTIONS=False)

    @app.get("/hello")
    def hello() -> str:
        return "hello"

    seen: list[tuple[str, Any]] = []

    def record(sender: Any, signal: Any, **named: Any) -> None:
        seen.append((signal.name.rpartition(".")[2], sender))

    started = (flask.signals.request_started, tocsin_flask._on_request_started)
    finished = (flask.signals.request_finished, tocsin_flask._on_request_finished)
    failed = (flask.signals.got_request_exception, tocsin_flask._on_got_request_exception)
    assert not request_started.is_active()
    assert not request_finished.is_active()
    tocsin_flask.connect_relays(app)
    try:
        # No tocsin receiver: blinker's signals have no relay.
        for pair in (started, finished, failed):
            assert not relay_connected(app, *pair)
        app.test_client().get("/hello")
        assert seen == []

        # A tocsin receiver connects its relay (only its own); the event arrives, once
        # even when the relays are connected again.
        request_started.connect(record)
        tocsin_flask.connect_relays(app)
        assert relay_connected(app, *started)
        assert not relay_connected(app, *finished)
        assert not relay_connected(app, *failed)
        app.test_client().get("/hello")
        assert seen == [("request_started", app)]

        # A receiver for another sender: connected, but nothing is sent for this app.
        got_request_exception.connect(record, sender="elsewhere")
        assert relay_connected(app, *failed)
        got_request_exception.disconnect(record, sender="elsewhere")
        assert not relay_connected(app, *failed)

        # The last tocsin receiver gone, the relay is disconnected.
        request_started.disconnect(record)
        assert not relay_connected(app, *started)
        app.test_client().get("/hello")
        assert seen == [("request_started", app)]
    finally:
        request_started.disconnect(record)
        tocsin_flask.disconnect_relays(app)

    # disconnect_relays also stops watching: a tocsin receiver connects nothing now.
    request_started.connect(record)
    try:
        assert not relay_connected(app, *started)
        app.test_client().get("/hello")
        assert seen == [("request_started", app)]
        # connect_relays again: connected at once, since a tocsin receiver is there.
        tocsin_flask.connect_relays(app)
        assert relay_connected(app, *started)
        app.test_client().get("/hello")
        assert seen == [("request_started", app)] * 2
    finally:
        request_started.disconnect(record)
        tocsin_flask.disconnect_relays(app)
    assert not relay_connected(app, *started)


def test_relays_of_several_apps_follow_the_tocsin_signal() -> None:
    from tocsin.signals import request_started

    first, second, other = flask.Flask("first"), flask.Flask("second"), flask.Flask("other")
    relay = tocsin_flask._on_request_started
    blinker_signal = flask.signals.request_started
    tocsin_flask.connect_relays(first)
    tocsin_flask.connect_relays(second)

    def record(sender: Any, **named: Any) -> None:
        pass

    try:
        with request_started.connected_to(record):
            assert relay_connected(first, blinker_signal, relay)
            assert relay_connected(second, blinker_signal, relay)
            assert not relay_connected(other, blinker_signal, relay)
            tocsin_flask.disconnect_relays(first)  # the other app keeps its relays
            assert not relay_connected(first, blinker_signal, relay)
            assert relay_connected(second, blinker_signal, relay)
        assert not relay_connected(second, blinker_signal, relay)
    finally:
        tocsin_flask.disconnect_relays(first)
        tocsin_flask.disconnect_relays(second)
    assert tocsin_flask._watched == []
