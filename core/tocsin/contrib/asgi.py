"""ASGI middleware that sends the request signals around every HTTP request and
WebSocket connection.

Wrap any ASGI 3 application::

    from tocsin.contrib.asgi import SignalsMiddleware

    app = SignalsMiddleware(app)

What is sent, and when (``sender`` is the middleware's class, as Django sends its
handler's class); every send is awaited (``asend``/``asend_robust``), so async
receivers run to completion on the server's event loop before the request goes on:

``request_started(sender, scope=scope)``
    before the application is called, with ``asend``: a receiver's exception
    propagates, as in Django.  It fails the request as the application failing would
    (``got_request_exception`` is sent, the application is not called, the exception
    reaches the server, which answers 500 or refuses the WebSocket handshake).

``got_request_exception(sender=None, request=scope)``
    when the application (or a ``request_started`` receiver) raises an ``Exception``;
    sent from inside the ``except`` block with ``asend_robust``: a receiver that raises
    is logged, and the application's exception is re-raised unchanged.  Synchronous
    receivers may use ``sys.exc_info()``; async ones run as tasks and may not.

``request_finished(sender)``
    exactly once per request or connection, with ``asend_robust`` (the response is
    already out, so a receiver that raises is logged and changes nothing), at the
    first of: the final response message has been handed to the server (the
    ``http.response.body`` without ``more_body``, or the last
    ``http.response.trailers`` when trailers were announced, or
    ``http.response.pathsend``; for a WebSocket, ``websocket.close`` or the end of a
    denial response); the application received ``http.disconnect`` or
    ``websocket.disconnect``; the application returned or raised.  An application
    that raises *after* its response is complete (Starlette's error middleware sends
    its 500 page, then re-raises) therefore sends ``request_finished`` before
    ``got_request_exception``.  Its receivers run to completion even when the server
    (or a framework: Starlette's streaming responses, on a client's disconnect)
    cancels the exchange while they run: the send runs in a task of its own, which the
    cancelled exchange stops waiting for, and which goes on for at most
    :data:`FINISH_TIMEOUT` seconds after the cancellation; past that, its receivers
    are cancelled (``asyncio.CancelledError`` where they wait) and a warning is logged
    under ``tocsin.contrib.asgi``.  An exchange that is not cancelled waits for its
    receivers however long they take.  What no middleware can prevent: when the server
    stops and its event loop ends (``asyncio.run`` cancels every task left), receivers
    still running are cancelled then.  (On an event loop other than asyncio's, the
    send is awaited unshielded.)

Synchronous receivers run off the event loop's thread, as :meth:`tocsin.Signal.asend`
runs them (and Django's ``asend``): through ``asgiref``'s thread-sensitive
``sync_to_async`` where asgiref is installed.

Other scopes (``lifespan``, and any this module does not know) are passed to the
application untouched: the same scope, ``receive`` and ``send`` objects, no signal.
Response messages are passed on one by one as the application sends them, never
buffered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tocsin.signals.request import got_request_exception, request_finished, request_started
from tocsin.state import check as check_shared_state

__all__ = ["FINISH_TIMEOUT", "ASGIApp", "Message", "Receive", "Scope", "Send", "SignalsMiddleware"]

logger = logging.getLogger(__name__)

#: Seconds ``request_finished`` receivers may still run once the server has cancelled
#: the exchange they finish (read when the cancellation happens).
FINISH_TIMEOUT = 30.0

# The shielded request_finished sends still running: the loop keeps only weak
# references to tasks, and nothing else awaits these once their exchange is cancelled.
_finishing: set[asyncio.Task[None]] = set()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SIGNALLED = frozenset({"http", "websocket"})
_DISCONNECTS = frozenset({"http.disconnect", "websocket.disconnect"})
# Messages after which nothing more is sent to the client, unless more_body says so.
_FINAL_UNLESS_MORE_BODY = frozenset(
    {"http.response.body", "websocket.http.response.body", "http.response.zerocopysend"}
)
_FINAL_ALWAYS = frozenset({"http.response.pathsend", "websocket.close"})


class SignalsMiddleware:
    """Send ``request_started``, ``got_request_exception`` and ``request_finished``
    around each HTTP request and WebSocket connection to the wrapped ASGI application
    (see the module documentation).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _SIGNALLED:
            await self.app(scope, receive, send)
            return
        check_shared_state()  # a change of the shared plugin state, if one is due
        sender = type(self)
        exchange = _Exchange(sender, receive, send)
        try:
            await request_started.asend(sender=sender, scope=scope)
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            await got_request_exception.asend_robust(sender=None, request=scope)
            raise
        finally:
            if not exchange.finished:
                await exchange.finish()


class _Exchange:
    """One request's ``receive`` and ``send``, watched for the end of the exchange."""

    __slots__ = ("_receive", "_send", "finished", "sender", "trailers")

    def __init__(self, sender: type, receive: Receive, send: Send) -> None:
        self.sender = sender
        self._receive = receive
        self._send = send
        self.finished = False
        self.trailers = False

    async def receive(self) -> Message:
        message = await self._receive()
        if not self.finished and message["type"] in _DISCONNECTS:
            await self.finish()
        return message

    async def send(self, message: Message) -> None:
        await self._send(message)
        if self.finished:
            return
        kind = message["type"]
        if kind in _FINAL_UNLESS_MORE_BODY:
            if not message.get("more_body", False) and not self.trailers:
                await self.finish()
        elif kind in _FINAL_ALWAYS:
            await self.finish()
        elif kind == "http.response.start":
            self.trailers = bool(message.get("trailers", False))
        elif kind == "http.response.trailers" and not message.get("more_trailers", False):
            await self.finish()

    async def finish(self) -> None:
        """Send ``request_finished``, the first time only."""
        if self.finished:
            return
        self.finished = True
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # another event loop (trio): nothing to shield with
            await request_finished.asend_robust(sender=self.sender)
            return
        task = asyncio.ensure_future(_finish(self.sender))
        _finishing.add(task)
        task.add_done_callback(_finishing.discard)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # The server cancelled the exchange (issue 14): it stops waiting here, the
            # receivers go on in their own task, for at most FINISH_TIMEOUT more seconds.
            if not task.done():
                _bound(task)
            raise


async def _finish(sender: type) -> None:
    try:
        await request_finished.asend_robust(sender=sender)
    except asyncio.CancelledError:
        if asyncio.current_task() not in _expired:
            raise  # the event loop is closing (the server stopped), not the bound
        logger.warning(
            "request_finished receivers were still running %s s after the server "
            "cancelled the exchange; they were cancelled.",
            FINISH_TIMEOUT,
        )


def _bound(task: asyncio.Task[None]) -> None:
    """Cancel *task* if it still runs :data:`FINISH_TIMEOUT` seconds from now."""

    def expire() -> None:
        if not task.done():
            _expired.add(task)
            task.cancel()

    def done(_: object) -> None:
        timer.cancel()
        _expired.discard(task)

    timer = asyncio.get_running_loop().call_later(FINISH_TIMEOUT, expire)
    task.add_done_callback(done)


#: The finishing tasks the bound cancelled (not the loop's end), until they are done.
_expired: set[asyncio.Task[None]] = set()
