"""tocsin.contrib.wsgi.SignalsMiddleware, behind a real wsgiref server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.client
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import setup_testing_defaults

import flask
import pytest

from tocsin.contrib.wsgi import SignalsMiddleware
from tocsin.signals import got_request_exception, request_finished, request_started

if TYPE_CHECKING:
    from conftest import Recorder

TIMEOUT = 5.0


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(app: Any) -> Iterator[tuple[str, int]]:
    """Serve *app* on a free port of 127.0.0.1 in a thread; stop it afterwards."""
    server = make_server("127.0.0.1", 0, app, server_class=WSGIServer, handler_class=QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield "127.0.0.1", server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def get(address: tuple[str, int], path: str) -> tuple[int, bytes]:
    url = f"http://{address[0]}:{address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def make_flask_app(gate: threading.Event | None = None) -> flask.Flask:
    app = flask.Flask("tocsin_wsgi_test")
    app.config["PROPAGATE_EXCEPTIONS"] = True  # let errors reach the middleware

    @app.route("/")
    def index() -> str:
        return "hello"

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("flask view failed")

    @app.route("/stream")
    def stream() -> flask.Response:
        def generate() -> Iterator[bytes]:
            yield b"first\n"
            assert gate is not None
            if not gate.wait(TIMEOUT):  # bounded: the test releases it
                raise TimeoutError("gate never opened")
            yield b"second\n"

        return flask.Response(generate(), mimetype="text/plain")

    @app.route("/stream-fails")
    def stream_fails() -> flask.Response:
        def generate() -> Iterator[bytes]:
            yield b"partial\n"
            raise ValueError("body failed")

        return flask.Response(generate(), mimetype="text/plain")

    return app


# -- through a real server ---------------------------------------------------------------


def test_flask_request_sends_started_then_finished(recorder: Recorder) -> None:
    app = make_flask_app()
    with serve(SignalsMiddleware(app)) as address:
        status, body = get(address, "/")
        recorder.wait_finished()
    assert (status, body) == (200, b"hello")
    assert recorder.names() == ["started", "finished"]
    (_, sender, named), (_, fin_sender, fin_named) = recorder.events
    assert sender is SignalsMiddleware
    assert fin_sender is SignalsMiddleware
    assert set(named) == {"environ"}  # environ, and no scope
    assert named["environ"]["PATH_INFO"] == "/"
    assert fin_named == {}


def test_flask_idiom_wrapping_wsgi_app(recorder: Recorder) -> None:
    app = make_flask_app()
    app.wsgi_app = SignalsMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    with serve(app) as address:
        for _ in range(3):
            recorder.finished.clear()
            assert get(address, "/") == (200, b"hello")
            recorder.wait_finished()
    assert recorder.names() == ["started", "finished"] * 3


def test_streaming_response_streams_and_finishes_once(recorder: Recorder) -> None:
    gate = threading.Event()
    with serve(SignalsMiddleware(make_flask_app(gate))) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        try:
            conn.request("GET", "/stream")
            response = conn.getresponse()
            assert response.status == 200
            # the first chunk arrives while the application is still blocked
            assert response.read(len(b"first\n")) == b"first\n"
            assert recorder.names() == ["started"]  # not finished: still streaming
            gate.set()
            assert response.read() == b"second\n"
        finally:
            conn.close()
        recorder.wait_finished()
    assert recorder.names() == ["started", "finished"]


def test_app_raising_sends_exception_and_server_answers_500(recorder: Recorder) -> None:
    with serve(SignalsMiddleware(make_flask_app())) as address:
        status, _ = get(address, "/boom")
        recorder.wait_finished()
    assert status == 500
    assert recorder.names() == ["started", "exception", "finished"]
    _, sender, named = recorder.events[1]
    assert sender is None
    assert named["request"]["PATH_INFO"] == "/boom"  # the environ
    (error,) = recorder.errors  # sent inside the except block: sys.exc_info() works
    assert isinstance(error, RuntimeError)
    assert str(error) == "flask view failed"


def test_body_iteration_raising_sends_exception_and_finishes_once(recorder: Recorder) -> None:
    with serve(SignalsMiddleware(make_flask_app())) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        try:
            conn.request("GET", "/stream-fails")
            response = conn.getresponse()
            assert response.status == 200  # headers were out before the body failed
            try:
                body = response.read()
            except http.client.IncompleteRead as partial:
                body = partial.partial
            assert body.startswith(b"partial\n")
        finally:
            conn.close()
        recorder.wait_finished()
    assert recorder.names() == ["started", "exception", "finished"]
    assert isinstance(recorder.errors[0], ValueError)


def test_request_started_receiver_raising_fails_the_request(recorder: Recorder) -> None:
    called: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        called.append("app")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def veto(sender: Any, **kwargs: Any) -> None:
        raise PermissionError("refused by a request_started receiver")

    with request_started.connected_to(veto), serve(SignalsMiddleware(app)) as address:
        status, _ = get(address, "/")
        recorder.wait_finished()
    assert status == 500
    assert called == []  # the application was never called
    assert recorder.names() == ["started", "exception", "finished"]
    assert isinstance(recorder.errors[0], PermissionError)


def test_got_request_exception_receiver_raising_is_logged(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise LookupError("reporter broke")

    with (
        got_request_exception.connected_to(broken),
        serve(SignalsMiddleware(make_flask_app())) as address,
    ):
        status, _ = get(address, "/boom")
        recorder.wait_finished()
    assert status == 500  # the application's error still answered as such
    assert recorder.names() == ["started", "exception", "finished"]
    assert "reporter broke" in caplog.text
    assert any(r.levelno == logging.ERROR and r.name.startswith("tocsin") for r in caplog.records)


def test_request_finished_receiver_raising_loses_no_response(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("finished receiver broke")

    # connected first, so it runs before the recorder's receiver
    with (
        request_finished.connected_to(broken, priority=1),
        serve(SignalsMiddleware(make_flask_app())) as address,
    ):
        assert get(address, "/") == (200, b"hello")
        recorder.wait_finished()
        assert get(address, "/") == (200, b"hello")  # the server carries on
    assert recorder.count("finished") == 2
    assert "finished receiver broke" in caplog.text


def test_async_receivers_run_in_the_server_thread(recorder: Recorder) -> None:
    seen: list[str] = []

    async def async_receiver(sender: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append("awaited")

    with (
        request_finished.connected_to(async_receiver),
        serve(SignalsMiddleware(make_flask_app())) as address,
    ):
        assert get(address, "/") == (200, b"hello")
        recorder.wait_finished()
    assert seen == ["awaited"]


# -- the WSGI protocol, called directly --------------------------------------------------


def environ_for(path: str = "/") -> dict[str, Any]:
    environ: dict[str, Any] = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    return environ


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return lambda data: None


class Body:
    """A response body with a close() that counts its calls."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed += 1


def test_close_passes_through_once_and_finishes_once(recorder: Recorder) -> None:
    body = Body([b"a", b"b"])
    result = SignalsMiddleware(lambda environ, sr: body)(environ_for(), start_response)
    assert list(result) == [b"a", b"b"]
    assert recorder.names() == ["started"]  # iterated, but not closed yet
    result.close()  # type: ignore[attr-defined]
    result.close()  # type: ignore[attr-defined]
    assert body.closed == 1
    assert recorder.names() == ["started", "finished"]


def test_close_is_provided_when_the_app_iterable_has_none(recorder: Recorder) -> None:
    result = SignalsMiddleware(lambda environ, sr: [b"x"])(environ_for(), start_response)
    assert list(result) == [b"x"]
    result.close()  # type: ignore[attr-defined]
    assert recorder.names() == ["started", "finished"]


def test_close_before_iteration_ends_finishes(recorder: Recorder) -> None:
    # a client that goes away mid-body: the server stops iterating and closes
    def chunks() -> Iterator[bytes]:
        yield b"1"
        yield b"2"

    gen = chunks()
    result = SignalsMiddleware(lambda environ, sr: gen)(environ_for(), start_response)
    iterator = iter(result)
    assert next(iterator) == b"1"
    result.close()  # type: ignore[attr-defined]
    assert recorder.names() == ["started", "finished"]
    assert gen.gi_frame is None  # the application's generator was closed


def test_app_error_is_reraised_unchanged(recorder: Recorder) -> None:
    error = RuntimeError("original")

    def app(environ: Any, sr: Any) -> list[bytes]:
        raise error

    def broken(sender: Any, **kwargs: Any) -> None:
        raise ValueError("receiver")

    with got_request_exception.connected_to(broken), pytest.raises(RuntimeError) as info:
        SignalsMiddleware(app)(environ_for(), start_response)
    assert info.value is error
    assert recorder.names() == ["started", "exception", "finished"]


def test_body_error_is_reraised_unchanged_and_close_still_closes(recorder: Recorder) -> None:
    error = OSError("disk gone")
    closed: list[bool] = []

    class FailingBody:
        def __iter__(self) -> Iterator[bytes]:
            yield b"ok"
            raise error

        def close(self) -> None:
            closed.append(True)

    result = SignalsMiddleware(lambda environ, sr: FailingBody())(environ_for(), start_response)
    with pytest.raises(OSError, match="disk gone") as info:
        list(result)
    assert info.value is error
    assert closed == [True]  # finished at once: a server need not call close() now
    result.close()  # type: ignore[attr-defined]  # but if it does, nothing is repeated
    assert closed == [True]
    assert recorder.names() == ["started", "exception", "finished"]


def test_base_exceptions_finish_without_exception_signal(recorder: Recorder) -> None:
    def app(environ: Any, sr: Any) -> list[bytes]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SignalsMiddleware(app)(environ_for(), start_response)
    assert recorder.names() == ["started", "finished"]


def test_each_request_finishes_once_among_many(recorder: Recorder) -> None:
    middleware = SignalsMiddleware(lambda environ, sr: [b"x"])
    for _ in range(50):
        result = middleware(environ_for(), start_response)
        list(result)
        result.close()  # type: ignore[attr-defined]
        result.close()  # type: ignore[attr-defined]
    assert recorder.names() == ["started", "finished"] * 50


def test_subclass_is_the_sender(recorder: Recorder) -> None:
    class MyMiddleware(SignalsMiddleware):
        pass

    result = MyMiddleware(lambda environ, sr: [b"x"])(environ_for(), start_response)
    result.close()  # type: ignore[attr-defined]
    assert [sender for _, sender, _ in recorder.events] == [MyMiddleware, MyMiddleware]


def test_no_receivers_changes_nothing() -> None:
    middleware = SignalsMiddleware(lambda environ, sr: [b"a", b"b"])
    assert "SignalsMiddleware(" in repr(middleware)
    result = middleware(environ_for(), start_response)
    assert list(result) == [b"a", b"b"]
    result.close()  # type: ignore[attr-defined]
