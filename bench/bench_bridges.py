"""Bridges benchmark: what the Django app and the Flask extension add to each request,
when no tocsin receiver listens and when one does.

    .venv/bin/python bench/bench_bridges.py [--quick]

**Django.**  A minimal project (no middleware, no database, one view returning a short
``HttpResponse``) with ``tocsin.contrib.django`` installed (``TOCSIN = {"autoload":
False}``, so no plugin adds receivers).  Each request calls Django's ``WSGIHandler``
directly with a fresh environ, reads the body and closes the response (which sends
``request_finished``).  The states compared:

* *without tocsin* (the baseline): every relay disabled
  (:func:`~tocsin.contrib.django.relay.disconnect_relays`), so Django's signals have
  exactly the receivers they would have without the app;
* *no receiver*: every relay enabled, as ``TocsinConfig`` leaves them, and no tocsin
  receiver: a relay is connected only while its tocsin signal has a receiver, so none
  is;
* *receiver, other sender*: one tocsin receiver on every relayed signal, for a sender
  that is never sent: every relay is connected, asks ``has_listeners(sender)`` and
  sends nothing (the relays' own cost, what every request paid before relays were
  connected on demand);
* *receiver*: one no-op tocsin receiver on every relayed signal, for any sender: the
  relays send, and the receiver is called.

Relays are the app's only per-request work, so the difference is what installing the
app costs a request.  Also measured: instantiating a model (``ContentType(...)``), since
Django sends ``pre_init`` and ``post_init`` for every instance, including every row a
query returns.

**Flask.**  An application with one view returning ``"ok"``, with
``Tocsin(app)`` (``TOCSIN = {"autoload": False}``), called through ``app.wsgi_app``
directly, in the same four states; without tocsin = the extension's relays disabled
(:func:`~tocsin.contrib.flask.disconnect_relays`), so Flask's blinker signals have no
receivers, as in an application without the extension.

Timing: batches of N calls, garbage collection off while timing, measured in CPU time
of this process (``time.process_time``), so that other processes competing for the
machine do not count; many rounds, each running one batch per state in a shuffled
order, so what noise remains spreads over both; the minimum per state is kept.  The
goal is an overhead under 2% of a minimal request.  Results also go to
``bench/results/bridges.json``.
"""

from __future__ import annotations

import gc
import io
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import environment, python_description, table, write_results

GOAL = 0.02
BASELINE = "without tocsin"
STATES = ("no receiver", "receiver, other sender", "receiver")


class Elsewhere:
    """A sender that is never sent: its receivers connect the relays, and get nothing."""


def noop(sender: Any, **named: Any) -> None:
    return None


def bench_states(
    targets: list[Any], enable: Callable[[], object], disable: Callable[[], object]
) -> dict[str, Callable[[], object]]:
    """The setters of the baseline and of STATES, for relays to the tocsin *targets*."""

    def quiet() -> None:
        for target in targets:
            target.disconnect(noop)
            target.disconnect(noop, sender=Elsewhere)

    def listening(sender: Any) -> Callable[[], None]:
        def setter() -> None:
            quiet()
            enable()
            for target in targets:
                target.connect(noop, sender=sender, weak=False)

        return setter

    def idle() -> None:
        quiet()
        enable()

    def without() -> None:
        quiet()
        disable()

    return {
        BASELINE: without,
        "no receiver": idle,
        "receiver, other sender": listening(Elsewhere),
        "receiver": listening(None),
    }


def best_per_call(
    states: dict[str, Callable[[], object]],
    action: Callable[[], None],
    number: int,
    rounds: int,
) -> dict[str, float]:
    """Seconds per call of *action* in each state (entered by calling its setter),
    the minimum over *rounds* batches of *number* calls."""
    best = dict.fromkeys(states, float("inf"))
    names = list(states)
    for name in names:  # warm up every state
        states[name]()
        for _ in range(number // 10 or 1):
            action()
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            states[name]()
            gc.collect()
            gc.disable()
            try:
                start = time.process_time()
                for _ in range(number):
                    action()
                elapsed = time.process_time() - start
            finally:
                gc.enable()
            best[name] = min(best[name], elapsed / number)
    return best


# -- Django -------------------------------------------------------------------------


def django_view(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(b"ok")


urlpatterns: list[Any] = []


def setup_django() -> None:
    import django
    from django.conf import settings
    from django.urls import path

    if settings.configured:
        raise SystemExit("bench_bridges configures Django itself: run it in its own process.")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "tocsin.contrib.django",
            "django.contrib.contenttypes",
            "django.contrib.auth",
        ],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
        TOCSIN={"autoload": False},
    )
    urlpatterns.append(path("", django_view))
    django.setup()


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def bench_django(number: int, rounds: int) -> dict[str, Any]:
    from django.contrib.contenttypes.models import ContentType
    from django.core.handlers.wsgi import WSGIHandler

    from tocsin import signals as catalogue
    from tocsin.contrib.django.relay import RELAYED, connect_relays, disconnect_relays

    handler = WSGIHandler()
    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }

    def request() -> None:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(b"")
        response = handler(environ, start_response)
        for _ in response:
            pass
        response.close()

    request()
    assert b"".join(handler({**base, "wsgi.input": io.BytesIO()}, start_response)) == b"ok"

    targets = [getattr(catalogue, name) for name in RELAYED]
    setters = bench_states(targets, connect_relays, disconnect_relays)
    requests = best_per_call(setters, request, number, rounds)

    def instantiate() -> None:
        ContentType(app_label="bench", model="thing")

    models = best_per_call(setters, instantiate, number * 10, rounds)
    setters["no receiver"]()
    return {
        "relays": list(RELAYED),
        "request": requests,
        "model_init": models,
    }


# -- Flask --------------------------------------------------------------------------


def bench_flask(number: int, rounds: int) -> dict[str, Any]:
    import flask
    from werkzeug.test import EnvironBuilder

    from tocsin import signals as catalogue
    from tocsin.contrib.flask import Tocsin, connect_relays, disconnect_relays

    app = flask.Flask("bench")
    app.config["TOCSIN"] = {"autoload": False}

    @app.get("/")
    def index() -> str:
        return "ok"

    Tocsin(app)
    base = EnvironBuilder(path="/").get_environ()

    def request() -> None:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(b"")
        response = app.wsgi_app(environ, start_response)
        for _ in response:
            pass
        close = getattr(response, "close", None)
        if close is not None:
            close()

    request()
    targets = [
        catalogue.request_started,
        catalogue.request_finished,
        catalogue.got_request_exception,
        catalogue.user_logged_in,
        catalogue.user_logged_out,
    ]
    setters = bench_states(targets, lambda: connect_relays(app), lambda: disconnect_relays(app))
    requests = best_per_call(setters, request, number, rounds)
    setters["no receiver"]()
    return {"request": requests}


# -- report -------------------------------------------------------------------------


def overhead_rows(label: str, timing: dict[str, float]) -> list[list[str]]:
    without = timing[BASELINE]
    rows = [[label, BASELINE, f"{without * 1e6:.2f}", "", "", ""]]
    for state in STATES:
        with_ = timing[state]
        extra = with_ - without
        share = extra / without
        verdict = "yes" if share < GOAL else "no"
        rows.append(
            [
                "",
                state,
                f"{with_ * 1e6:.2f}",
                f"{extra * 1e9:+.0f}",
                f"{share * 100:+.2f}%",
                verdict,
            ]
        )
    return rows


def check_no_receivers() -> None:
    from tocsin import signals

    listened = [name for name in signals.__all__ if getattr(signals, name).receivers]
    if listened:
        raise SystemExit(
            f"tocsin receivers are connected to {', '.join(listened)} (a TOCSIN_* "
            f"environment variable enabling plugins?): this benchmark measures the "
            f"bridges with none."
        )


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    number, rounds = (300, 5) if quick else (500, 80)
    setup_django()
    check_no_receivers()
    django_results = bench_django(number, rounds)
    flask_results = bench_flask(number, rounds)
    check_no_receivers()
    headers = ["per call", "state", "µs", "extra ns", "overhead", f"< {GOAL:.0%}"]
    rows = [
        *overhead_rows("Django request (WSGIHandler)", django_results["request"]),
        *overhead_rows("Django model instantiation", django_results["model_init"]),
        *overhead_rows("Flask request (app.wsgi_app)", flask_results["request"]),
    ]
    print(
        table(
            headers,
            rows,
            title=(
                f"Bridges' overhead, {python_description()}; min of "
                f"{rounds} rounds of {number} requests ({number * 10} instantiations)"
            ),
        )
    )
    path = write_results(
        "bridges",
        {
            "environment": environment("django", "flask", "blinker"),
            "number": number,
            "rounds": rounds,
            "goal": GOAL,
            "django": django_results,
            "flask": flask_results,
        },
    )
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
