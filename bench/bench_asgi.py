"""Requests per second through tocsin's ASGI and WSGI middleware, against the bare app.

Each application is called directly (no server, no sockets), in a loop of many
requests, so the figures isolate what the middleware adds: for ASGI, on a real asyncio
event loop; for WSGI, calling the app, iterating its body and closing it as a server
would.  Every figure is the best (min time) of several repeats.

Run by hand::

    python bench/bench_asgi.py [--requests 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from tocsin.contrib.asgi import SignalsMiddleware as AsgiMiddleware
from tocsin.contrib.wsgi import SignalsMiddleware as WsgiMiddleware
from tocsin.signals import got_request_exception, request_finished, request_started

Message = dict[str, Any]

# -- ASGI ----------------------------------------------------------------------------

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "path": "/",
    "headers": [(b"host", b"127.0.0.1")],
    "query_string": b"",
    "root_path": "",
    "scheme": "http",
    "server": ("127.0.0.1", 80),
    "client": ("127.0.0.1", 50000),
}
REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}
START: Message = {"type": "http.response.start", "status": 200, "headers": []}
BODY: Message = {"type": "http.response.body", "body": b"hello", "more_body": False}


async def bare_asgi(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send(START)
    await send(BODY)


async def receive() -> Message:
    return REQUEST


async def send(message: Message) -> None:
    return None


def time_asgi(app: Callable[[Any, Any, Any], Awaitable[None]], requests: int) -> float:
    async def many() -> float:
        started = time.perf_counter()
        for _ in range(requests):
            await app(SCOPE, receive, send)
        return time.perf_counter() - started

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(many())
    finally:
        loop.close()


# -- WSGI ----------------------------------------------------------------------------

ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "80",
    "QUERY_STRING": "",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "wsgi.url_scheme": "http",
    "wsgi.input": io.BytesIO(),
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.version": (1, 0),
}
HEADERS = [("Content-Type", "text/plain")]


def bare_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", HEADERS)
    return [b"hello"]


def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
    return _write


def _write(data: bytes) -> None:
    return None


def time_wsgi(app: Callable[[Any, Any], Iterable[bytes]], requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        result = app(ENVIRON, start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return time.perf_counter() - started


# -- real frameworks, when installed --------------------------------------------------


def framework_apps() -> list[tuple[str, str, Any]]:
    """(label, "asgi"|"wsgi", app) for the frameworks that are installed."""
    apps: list[tuple[str, str, Any]] = []
    try:
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
    except ImportError:
        pass
    else:

        async def hello(request: Any) -> PlainTextResponse:
            return PlainTextResponse("hello")

        apps.append(("Starlette app", "asgi", Starlette(routes=[Route("/", hello)])))
    try:
        import flask
    except ImportError:
        pass
    else:
        flask_app = flask.Flask("bench")
        flask_app.add_url_rule("/", "hello", lambda: "hello")
        apps.append(("Flask app", "wsgi", flask_app))
    return apps


# -- running -------------------------------------------------------------------------


def best(run: Callable[[], float], repeats: int) -> float:
    run()  # warm up caches (per-sender receiver tuples, code paths)
    times = []
    for _ in range(repeats):
        gc.collect()
        times.append(run())
    return min(times)


def _noop(sender: Any, **kwargs: Any) -> None:
    return None


@contextmanager
def one_receiver_each() -> Iterator[None]:
    with ExitStack() as stack:
        for signal in (request_started, request_finished, got_request_exception):
            stack.enter_context(signal.connected_to(_noop))
        yield


def report(label: str, bare: float, wrapped: float, requests: int) -> None:
    bare_rps, wrapped_rps = requests / bare, requests / wrapped
    overhead_us = (wrapped - bare) / requests * 1e6
    print(
        f"{label:<34} {bare_rps:>12,.0f} {wrapped_rps:>12,.0f} "
        f"{wrapped_rps / bare_rps:>7.2f} {overhead_us:>9.2f}"
    )


def compare_framework(label: str, kind: str, app: Any, requests: int, repeats: int) -> None:
    if kind == "asgi":
        wrapped_asgi = AsgiMiddleware(app)
        bare = best(lambda: time_asgi(app, requests), repeats)
        wrapped = best(lambda: time_asgi(wrapped_asgi, requests), repeats)
    else:
        wrapped_wsgi = WsgiMiddleware(app)
        bare = best(lambda: time_wsgi(app, requests), repeats)
        wrapped = best(lambda: time_wsgi(wrapped_wsgi, requests), repeats)
    report(f"{label}, no receivers", bare, wrapped, requests)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; the best is kept")
    args = parser.parse_args(argv)
    n, repeats = args.requests, args.repeats

    asgi_app, wsgi_app = AsgiMiddleware(bare_asgi), WsgiMiddleware(bare_wsgi)
    asgi_bare = best(lambda: time_asgi(bare_asgi, n), repeats)
    wsgi_bare = best(lambda: time_wsgi(bare_wsgi, n), repeats)

    print(f"{n:,} requests per repeat, best of {repeats}; ratio = wrapped / bare req/s")
    print(f"{'':<34} {'bare req/s':>12} {'wrapped':>12} {'ratio':>7} {'+us/req':>9}")
    report("ASGI, no receivers", asgi_bare, best(lambda: time_asgi(asgi_app, n), repeats), n)
    report("WSGI, no receivers", wsgi_bare, best(lambda: time_wsgi(wsgi_app, n), repeats), n)
    for label, kind, app in framework_apps():
        compare_framework(label, kind, app, max(n // 10, 1), repeats)  # slower: fewer
    with one_receiver_each():
        report(
            "ASGI, one sync receiver per signal",
            asgi_bare,
            best(lambda: time_asgi(asgi_app, n), repeats),
            n,
        )
        report(
            "WSGI, one sync receiver per signal",
            wsgi_bare,
            best(lambda: time_wsgi(wsgi_app, n), repeats),
            n,
        )


if __name__ == "__main__":
    main()
