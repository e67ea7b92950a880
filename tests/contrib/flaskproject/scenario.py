"""A real Flask application driven by its test client; run by tests/contrib/test_flask.py.

    python scenario.py full [--without-flask-login]

``--without-flask-login`` makes ``flask_login`` unimportable in this process (a
``None`` entry in ``sys.modules`` is Python's own way to say a module cannot be
imported), so the extension runs as it would where Flask-Login is not installed.

``app.config["TOCSIN"]`` is read from the JSON in $TOCSIN_TEST_SETTINGS.  Phase
markers go into $TOCSIN_TEST_RECORD between what the plugins record, and a JSON report
is printed last on stdout.  Warnings are errors, as in the test suite.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

warnings.simplefilter("error")

WITHOUT_LOGIN = "--without-flask-login" in sys.argv
if WITHOUT_LOGIN:
    sys.modules["flask_login"] = None  # type: ignore[assignment]


def phase(name: str) -> None:
    with open(os.environ["TOCSIN_TEST_RECORD"], "a", encoding="utf-8") as file:
        file.write(json.dumps({"phase": name}) + "\n")


def create_app(name: str, *, with_tocsin: bool) -> Any:
    import flask

    from tocsin.contrib.flask import Tocsin
    from tocsin.signals import user_login_failed

    app = flask.Flask(name)
    app.config.update(SECRET_KEY="tests-only", PROPAGATE_EXCEPTIONS=False)
    if "TOCSIN_TEST_SETTINGS" in os.environ:
        app.config["TOCSIN"] = json.loads(os.environ["TOCSIN_TEST_SETTINGS"])

    @app.get("/hello")
    def hello() -> str:
        return "hello"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom, on purpose")

    if not WITHOUT_LOGIN:
        import flask_login

        class User(flask_login.UserMixin):
            def __init__(self, user_id: str) -> None:
                self.id = user_id

        users = {"ada": ("correct horse", User("ada"))}
        login_manager = flask_login.LoginManager(app)

        @login_manager.user_loader
        def load_user(user_id: str) -> User | None:
            entry = users.get(user_id)
            return entry[1] if entry else None

        @app.post("/login")
        def login() -> tuple[str, int]:
            form = flask.request.form
            entry = users.get(form.get("username", ""))
            if entry is None or entry[0] != form.get("password"):
                # Flask-Login has no login-failed signal: the view reports it.
                user_login_failed.send(
                    sender=__name__, credentials=form.to_dict(), request=flask.request
                )
                return "no", 401
            flask_login.login_user(entry[1])
            return "ok", 200

        @app.get("/logout")
        def logout() -> str:
            flask_login.logout_user()
            return "bye"

    extension = Tocsin(app) if with_tocsin else None
    if extension is not None:
        extension.init_app(app)  # a second time: must not relay twice
    return app, extension


def full() -> dict[str, Any]:
    import tocsin

    phase("setup")
    app, extension = create_app("flaskproject", with_tocsin=True)
    other, _ = create_app("other", with_tocsin=False)
    client = app.test_client()

    phase("requests")
    assert client.get("/hello").status_code == 200
    assert client.get("/boom").status_code == 500

    phase("other-app")
    assert other.test_client().get("/hello").status_code == 200

    if not WITHOUT_LOGIN:
        phase("auth")
        assert (
            client.post("/login", data={"username": "ada", "password": "correct horse"}).text
            == "ok"
        )
        assert client.get("/logout").text == "bye"
        failed = client.post(
            "/login", data={"username": "ada", "password": "wrong", "api_key": "k3y"}
        )
        assert failed.status_code == 401
    phase("end")

    return {
        "relays_flask_login": extension.relays_flask_login,
        "plugins": {name: info.enabled for name, info in tocsin.plugins.items()},
        "same_manager": extension.plugins is tocsin.plugins,
        "extension": type(app.extensions["tocsin"]).__name__,
    }


if __name__ == "__main__":
    if sys.argv[1:2] != ["full"]:
        raise SystemExit(f"usage: scenario.py full [--without-flask-login]; got {sys.argv[1:]}")
    print(json.dumps(full()))
