"""tocsin.contrib.asgi.SignalsMiddleware, behind a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tocsin.contrib.asgi import SignalsMiddleware
from tocsin.signals import got_request_exception, request_finished, request_started

if TYPE_CHECKING:
    from conftest import Recorder

TIMEOUT = 5.0
Message = dict[str, Any]


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve *app* with uvicorn on a free port of 127.0.0.1 in a thread; stop it after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    config = uvicorn.Config(
        app,
        lifespan="on",
        loop="asyncio",
        http="h11",
        ws="websockets-sansio",
        log_level="critical",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield f"{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT * 2)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def make_starlette_app(gate: threading.Event | None = None) -> tuple[Starlette, list[str]]:
    lifespan_events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        lifespan_events.append("startup")
        yield
        lifespan_events.append("shutdown")

    async def index(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("starlette view failed")

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            for _ in range(int(TIMEOUT / 0.01)):  # bounded wait for the test's go-ahead
                if gate is not None and gate.is_set():
                    break
                await asyncio.sleep(0.01)
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"echo: {text}")
        await websocket.close()

    async def listen(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass

    async def deny(websocket: WebSocket) -> None:
        await websocket.close(code=1008)  # before accept: the handshake is refused

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/boom", boom),
            Route("/stream", stream),
            WebSocketRoute("/ws/echo", echo),
            WebSocketRoute("/ws/listen", listen),
            WebSocketRoute("/ws/deny", deny),
        ],
        lifespan=lifespan,
    )
    return app, lifespan_events


# -- through a real server ---------------------------------------------------------------


def test_starlette_request_and_lifespan_untouched(recorder: Recorder) -> None:
    app, lifespan_events = make_starlette_app()
    with serve(SignalsMiddleware(app)) as address:
        assert lifespan_events == ["startup"]  # lifespan reached the app
        assert recorder.names() == []  # and sent no signal
        response = httpx.get(f"http://{address}/", timeout=TIMEOUT)
        recorder.wait_finished()
    assert lifespan_events == ["startup", "shutdown"]
    assert (response.status_code, response.text) == (200, "hello")
    assert recorder.names() == ["started", "finished"]
    (_, sender, named), (_, fin_sender, fin_named) = recorder.events
    assert sender is SignalsMiddleware
    assert fin_sender is SignalsMiddleware
    assert set(named) == {"scope"}  # scope, and no environ
    assert named["scope"]["type"] == "http"
    assert named["scope"]["path"] == "/"
    assert fin_named == {}


def test_many_requests_each_finish_once(recorder: Recorder) -> None:
    app, _ = make_starlette_app()
    with serve(SignalsMiddleware(app)) as address, httpx.Client(timeout=TIMEOUT) as client:
        for _ in range(20):
            recorder.finished.clear()
            assert client.get(f"http://{address}/").text == "hello"
            recorder.wait_finished()
    assert recorder.names() == ["started", "finished"] * 20


def test_streaming_response_streams_and_finishes_once(recorder: Recorder) -> None:
    gate = threading.Event()
    app, _ = make_starlette_app(gate)
    with (
        serve(SignalsMiddleware(app)) as address,
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream("GET", f"http://{address}/stream") as response,
    ):
        chunks = response.iter_raw()
        assert next(chunks) == b"first\n"
        assert recorder.names() == ["started"]  # not finished: still streaming
        gate.set()
        assert b"".join(chunks) == b"second\n"
        recorder.wait_finished()
    assert recorder.names() == ["started", "finished"]


def test_app_raising_after_its_500_sends_finished_then_exception(recorder: Recorder) -> None:
    app, _ = make_starlette_app()
    with serve(SignalsMiddleware(app)) as address:
        response = httpx.get(f"http://{address}/boom", timeout=TIMEOUT)
        recorder.wait_finished()
        deadline = time.monotonic() + TIMEOUT
        while recorder.count("exception") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert response.status_code == 500
    # Starlette's ServerErrorMiddleware sends the 500 page, then re-raises
    assert recorder.names() == ["started", "finished", "exception"]
    _, sender, named = recorder.events[2]
    assert sender is None
    assert named["request"]["path"] == "/boom"  # the scope
    assert isinstance(recorder.errors[0], RuntimeError)


def test_request_started_receiver_raising_fails_the_request(recorder: Recorder) -> None:
    app, _ = make_starlette_app()

    async def veto(sender: Any, **kwargs: Any) -> None:
        raise PermissionError("refused")

    with request_started.connected_to(veto), serve(SignalsMiddleware(app)) as address:
        response = httpx.get(f"http://{address}/", timeout=TIMEOUT)
        recorder.wait_finished()
    assert response.status_code == 500  # uvicorn answers for the failed application
    assert recorder.names() == ["started", "exception", "finished"]


def test_receivers_raising_in_exception_and_finished_lose_no_response(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = make_starlette_app()

    def broken_reporter(sender: Any, **kwargs: Any) -> None:
        raise LookupError("reporter broke")

    async def broken_finisher(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("finisher broke")

    with (
        got_request_exception.connected_to(broken_reporter),
        request_finished.connected_to(broken_finisher, priority=1),
        serve(SignalsMiddleware(app)) as address,
        httpx.Client(timeout=TIMEOUT) as client,
    ):
        assert client.get(f"http://{address}/").text == "hello"
        recorder.wait_finished()
        recorder.finished.clear()
        assert client.get(f"http://{address}/boom").status_code == 500
        recorder.wait_finished()
        assert client.get(f"http://{address}/").text == "hello"  # the server carries on
    assert "finisher broke" in caplog.text
    deadline = time.monotonic() + TIMEOUT
    while "reporter broke" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "reporter broke" in caplog.text
    assert any(r.name.startswith("tocsin") and r.levelno == logging.ERROR for r in caplog.records)


def test_async_receivers_are_awaited_before_the_app_runs(recorder: Recorder) -> None:
    state: dict[str, Any] = {}

    async def prepare(sender: Any, scope: Any = None, **kwargs: Any) -> None:
        await asyncio.sleep(0.01)
        state["prepared"] = scope["path"]
        state["thread"] = threading.current_thread()

    async def after(sender: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0.01)
        state["finished"] = True

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        body = f"prepared={state.get('prepared')}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with (
        request_started.connected_to(prepare),
        request_finished.connected_to(after),
        serve(SignalsMiddleware(app)) as address,
    ):
        response = httpx.get(f"http://{address}/x", timeout=TIMEOUT)
        recorder.wait_finished()
    assert response.text == "prepared=/x"
    assert state["finished"] is True
    assert state["thread"] is not threading.current_thread()  # in the server's loop


def test_client_disconnect_finishes_once(recorder: Recorder) -> None:
    returned = threading.Event()
    at_disconnect: list[list[str]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        for _ in range(int(TIMEOUT / 0.01)):  # bounded
            message = await asyncio.wait_for(receive(), TIMEOUT)
            if message["type"] == "http.disconnect":
                at_disconnect.append(recorder.names())
                break
        returned.set()

    with serve(SignalsMiddleware(app)) as address:
        host, port = address.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.read(len(b"first\n")) == b"first\n"
        assert recorder.names() == ["started"]
        conn.close()  # the client goes away mid-response
        assert returned.wait(TIMEOUT)
        recorder.wait_finished()
    # finished when the disconnect was received, before the app went on
    assert at_disconnect == [["started", "finished"]]
    assert recorder.names() == ["started", "finished"]


def test_websocket_echo_finishes_on_close(recorder: Recorder) -> None:
    app, _ = make_starlette_app()
    with serve(SignalsMiddleware(app)) as address:
        with ws_connect(f"ws://{address}/ws/echo", open_timeout=TIMEOUT) as ws:
            assert recorder.names() == ["started"]
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "echo: hi"
        recorder.wait_finished()
    assert recorder.names() == ["started", "finished"]
    assert recorder.events[0][2]["scope"]["type"] == "websocket"


def test_websocket_client_disconnect_finishes_once(recorder: Recorder) -> None:
    app, _ = make_starlette_app()
    with serve(SignalsMiddleware(app)) as address:
        with ws_connect(f"ws://{address}/ws/listen", open_timeout=TIMEOUT) as ws:
            ws.send("one")
            ws.send("two")
            time.sleep(0.05)
            assert recorder.names() == ["started"]
        recorder.wait_finished()  # the client closed: websocket.disconnect
    assert recorder.names() == ["started", "finished"]


def test_websocket_denied_finishes_once(recorder: Recorder) -> None:
    app, _ = make_starlette_app()
    with serve(SignalsMiddleware(app)) as address:
        with pytest.raises(InvalidStatus), ws_connect(f"ws://{address}/ws/deny"):
            pass
        recorder.wait_finished()
    assert recorder.names() == ["started", "finished"]


# -- the ASGI protocol, called directly with a real event loop ---------------------------


class Channel:
    """A client side for direct ASGI calls: queued incoming messages, recorded output."""

    def __init__(self, *incoming: Message) -> None:
        self.incoming = list(incoming)
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def http_scope(path: str = "/") -> dict[str, Any]:
    return {
        "type": "http",
        "path": path,
        "method": "GET",
        "headers": [],
        "asgi": {"version": "3.0"},
    }


def run(app: Callable[..., Awaitable[None]], scope: dict[str, Any], channel: Channel) -> None:
    asyncio.run(app(scope, channel.receive, channel.send))


def test_lifespan_is_passed_through_untouched(recorder: Recorder) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))
        message = await receive()
        await send({"type": message["type"] + ".complete"})

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    channel = Channel({"type": "lifespan.startup"})
    receive, send = channel.receive, channel.send

    async def main() -> None:
        await SignalsMiddleware(app)(scope, receive, send)

    asyncio.run(main())
    ((got_scope, got_receive, got_send),) = seen
    assert got_scope is scope
    assert got_receive == receive  # the very callables, not wrappers
    assert got_send == send
    assert channel.sent == [{"type": "lifespan.startup.complete"}]
    assert recorder.names() == []


def test_unknown_scope_types_pass_through(recorder: Recorder) -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    run(SignalsMiddleware(app), {"type": "custom.thing"}, Channel())
    assert calls == ["custom.thing"]
    assert recorder.names() == []


def test_messages_pass_unchanged_and_finish_after_the_final_body(recorder: Recorder) -> None:
    order: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        order.append(f"after chunk: {recorder.names()}")
        await send({"type": "http.response.body", "body": b"b"})
        order.append(f"after final: {recorder.names()}")

    channel = Channel()
    run(SignalsMiddleware(app), http_scope(), channel)
    assert [m.get("body") for m in channel.sent] == [None, b"a", b"b"]
    assert order == ["after chunk: ['started']", "after final: ['started', 'finished']"]
    assert recorder.names() == ["started", "finished"]


def test_trailers_finish_after_the_last_trailers(recorder: Recorder) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"a"})
        assert recorder.names() == ["started"]
        await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})
        assert recorder.names() == ["started", "finished"]

    run(SignalsMiddleware(app), http_scope(), Channel())
    assert recorder.names() == ["started", "finished"]


def test_pathsend_is_final(recorder: Recorder) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": "/dev/null"})
        assert recorder.names() == ["started", "finished"]

    run(SignalsMiddleware(app), http_scope(), Channel())


def test_app_returning_without_a_response_finishes_once(recorder: Recorder) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    run(SignalsMiddleware(app), http_scope(), Channel())
    assert recorder.names() == ["started", "finished"]


def test_disconnect_received_finishes_before_the_app_returns(recorder: Recorder) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "http.request"
        assert (await receive())["type"] == "http.disconnect"
        assert recorder.names() == ["started", "finished"]
        assert (await receive())["type"] == "http.disconnect"  # asked again: no second send

    channel = Channel({"type": "http.request", "body": b"", "more_body": False})
    run(SignalsMiddleware(app), http_scope(), channel)
    assert recorder.names() == ["started", "finished"]


def test_exception_is_reraised_unchanged(recorder: Recorder) -> None:
    error = RuntimeError("original")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise error

    def broken(sender: Any, **kwargs: Any) -> None:
        raise ValueError("receiver broke")

    with got_request_exception.connected_to(broken), pytest.raises(RuntimeError) as info:
        run(SignalsMiddleware(app), http_scope(), Channel())
    assert info.value is error
    assert recorder.names() == ["started", "exception", "finished"]
    assert recorder.errors == [error]  # sync receivers see sys.exc_info()


def test_cancellation_still_finishes(recorder: Recorder) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(TIMEOUT)

    async def main() -> None:
        task = asyncio.create_task(SignalsMiddleware(app)(http_scope(), Channel().receive, _drop))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert recorder.names() == ["started", "finished"]  # cancelling is no app exception


async def _drop(message: Message) -> None:
    return None


def test_websocket_scope_directly(recorder: Recorder) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hi"})
        assert recorder.names() == ["started"]
        await send({"type": "websocket.close", "code": 1000})
        assert recorder.names() == ["started", "finished"]

    channel = Channel({"type": "websocket.connect"})
    run(SignalsMiddleware(app), {"type": "websocket", "path": "/ws"}, channel)
    assert recorder.names() == ["started", "finished"]


def test_websocket_denial_response_body_is_final(recorder: Recorder) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no", "more_body": True})
        assert recorder.names() == ["started"]
        await send({"type": "websocket.http.response.body", "body": b"!"})
        assert recorder.names() == ["started", "finished"]

    run(SignalsMiddleware(app), {"type": "websocket", "path": "/ws"}, Channel())


def test_async_and_sync_receivers_in_order(recorder: Recorder) -> None:
    log: list[str] = []

    async def slow(sender: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0.01)
        log.append("async started receiver done")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        log.append("app")

    with request_started.connected_to(slow):
        run(SignalsMiddleware(app), http_scope(), Channel())
    assert log == ["async started receiver done", "app"]


def test_no_receivers_changes_nothing() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    channel = Channel()
    middleware = SignalsMiddleware(app)
    assert repr(middleware).startswith("SignalsMiddleware(")
    run(middleware, http_scope(), channel)
    assert [m["type"] for m in channel.sent] == ["http.response.start", "http.response.body"]


# -- request_finished when the exchange is cancelled (issue 14) ------------------------

EXCHANGES = 150


class Finishes:
    """An async request_finished receiver that takes a while, counting how its runs end."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0
        self.completed = 0
        self.cancelled = 0
        self.lock = threading.Lock()

    async def receiver(self, sender: Any, **named: Any) -> None:
        with self.lock:
            self.started += 1
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            with self.lock:
                self.cancelled += 1
            raise
        with self.lock:
            self.completed += 1

    def wait(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.completed + self.cancelled >= count:
                    return
            time.sleep(0.01)
        raise AssertionError(
            f"{self.started} started, {self.completed} completed, {self.cancelled} cancelled"
        )


@pytest.fixture
def cancellations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the exchanges cancelled while their request_finished receivers ran (each
    such cancellation starts the FINISH_TIMEOUT bound)."""
    from tocsin.contrib import asgi

    seen: list[int] = []
    original = asgi._bound

    def counting(task: Any) -> None:
        seen.append(1)
        original(task)

    monkeypatch.setattr(asgi, "_bound", counting)
    return seen


def fetch(address: str, path: str) -> bytes:
    """One exchange on a connection of its own: read the whole response, and hang up."""
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def test_starlette_cancelling_a_stream_on_disconnect_lets_request_finished_complete(
    cancellations: list[int],
) -> None:
    # Starlette (ASGI spec 2.3, as uvicorn's h11 says) streams inside an anyio task group
    # that it cancels when the client disconnects: a client that hangs up as soon as it
    # has the response cancels the stream while request_finished receivers run.
    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"one\n"
            yield b"two\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    finishes = Finishes(0.05)
    app = Starlette(routes=[Route("/stream", stream)])
    with request_finished.connected_to(finishes.receiver), serve(SignalsMiddleware(app)) as address:
        for _ in range(EXCHANGES):
            assert fetch(address, "/stream") == b"one\ntwo\n"
        finishes.wait(EXCHANGES)
    assert (finishes.started, finishes.completed, finishes.cancelled) == (EXCHANGES, EXCHANGES, 0)
    assert len(cancellations) >= EXCHANGES // 2  # the case at hand did happen, mostly


class CancellingServer:
    """What a server does to an exchange whose client went away: cancel its task.  Here
    right after the application handed over the final body, so while the
    request_finished receivers run."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cancelled = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        async def send_then_cancel(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                loop.call_soon(task.cancel)

        try:
            await self.app(scope, receive, send_then_cancel)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def plain_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


def test_request_finished_completes_when_the_server_cancels_the_exchange(
    cancellations: list[int],
) -> None:
    finishes = Finishes(0.05)
    server = CancellingServer(SignalsMiddleware(plain_app))
    with request_finished.connected_to(finishes.receiver), serve(server) as address:
        for _ in range(EXCHANGES):
            assert fetch(address, "/") == b"done"
        finishes.wait(EXCHANGES)
    assert server.cancelled == EXCHANGES
    assert len(cancellations) == EXCHANGES
    assert (finishes.started, finishes.completed, finishes.cancelled) == (EXCHANGES, EXCHANGES, 0)


def test_past_finish_timeout_receivers_of_a_cancelled_exchange_are_cancelled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tocsin.contrib import asgi

    monkeypatch.setattr(asgi, "FINISH_TIMEOUT", 0.2)
    finishes = Finishes(3.0)
    server = CancellingServer(SignalsMiddleware(plain_app))
    with (
        caplog.at_level(logging.WARNING, logger="tocsin.contrib.asgi"),
        request_finished.connected_to(finishes.receiver),
        serve(server) as address,
    ):
        started = time.monotonic()
        for _ in range(3):
            assert fetch(address, "/") == b"done"
        finishes.wait(3, timeout=2.5)
        elapsed = time.monotonic() - started
    assert (finishes.started, finishes.completed, finishes.cancelled) == (3, 0, 3)
    assert elapsed < 2.5  # cancelled at the bound, not after the receivers' 3 s
    warnings = [r for r in caplog.records if r.name == "tocsin.contrib.asgi"]
    expected = (
        "request_finished receivers were still running 0.2 s after the server cancelled "
        "the exchange; they were cancelled."
    )
    assert [r.getMessage() for r in warnings] == [expected] * 3


def test_finish_timeout_does_not_bound_an_exchange_that_is_not_cancelled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tocsin.contrib import asgi

    monkeypatch.setattr(asgi, "FINISH_TIMEOUT", 0.05)
    finishes = Finishes(0.3)
    with (
        caplog.at_level(logging.WARNING, logger="tocsin.contrib.asgi"),
        request_finished.connected_to(finishes.receiver),
        serve(SignalsMiddleware(plain_app)) as address,
    ):
        assert fetch(address, "/") == b"done"
        finishes.wait(1)
    assert (finishes.completed, finishes.cancelled) == (1, 0)
    assert not [r for r in caplog.records if r.name == "tocsin.contrib.asgi"]
