"""WSGI middleware that sends the request signals around every request.

Wrap any WSGI application::

    from tocsin.contrib.wsgi import SignalsMiddleware

    app = SignalsMiddleware(app)
    flask_app.wsgi_app = SignalsMiddleware(flask_app.wsgi_app)   # Flask's own idiom

What is sent, and when (``sender`` is the middleware's class, as Django sends its
handler's class):

``request_started(sender, environ=environ)``
    before the application is called, with ``send``: a receiver's exception
    propagates, as in Django.  It fails the request as the application failing would
    (``got_request_exception`` is sent, the application is not called, and the server
    answers 500).

``got_request_exception(sender=None, request=environ)``
    when calling the application, or iterating the body it returned, raises an
    ``Exception``; sent from inside the ``except`` block (receivers may use
    ``sys.exc_info()``), with ``send_robust``: a receiver that raises is logged and
    the application's exception is re-raised unchanged.

``request_finished(sender)``
    exactly once per request, with ``send_robust`` (the response is already out, so
    a receiver that raises is logged and changes nothing): when the server calls the
    response's ``close()`` (PEP 3333 requires servers to), which the middleware
    provides and passes through to the application's own ``close()`` first, even when
    the application's iterable has none; or as soon as iterating the body raises, or
    as soon as calling the application raises (there is no body then).

The body is never buffered: chunks are passed on one by one, as the application
yields them.

Before ``request_started``, each request calls :func:`tocsin.state.check`: when the
process follows a shared plugin state (``TOCSIN_STATE``, see :mod:`tocsin.state`) and
no background thread does, a change made since the last check is applied before the
request's signals are sent.  It reads the backend at most once per interval, and costs
a list lookup when no shared state is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tocsin.signals.request import got_request_exception, request_finished, request_started
from tocsin.state import check as check_shared_state

__all__ = ["SignalsMiddleware", "StartResponse", "WSGIApplication", "WSGIEnvironment"]

logger = logging.getLogger("tocsin.contrib.wsgi")

WSGIEnvironment = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApplication = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]


class SignalsMiddleware:
    """Send ``request_started``, ``got_request_exception`` and ``request_finished``
    around each request to the wrapped WSGI application (see the module documentation).
    """

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app!r})"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        sender = type(self)
        check_shared_state()
        try:
            request_started.send(sender=sender, environ=environ)
            result = self.app(environ, start_response)
        except BaseException as error:
            try:
                if isinstance(error, Exception):
                    got_request_exception.send_robust(sender=None, request=environ)
            finally:
                request_finished.send_robust(sender=sender)
            raise
        return ClosingIterable(result, sender, environ)


class ClosingIterable:
    """The response body as the server sees it: the application's chunks, unchanged
    and unbuffered, and a ``close()`` that closes the application's iterable and then
    sends ``request_finished`` — once, however often it is called.
    """

    __slots__ = ("_environ", "_finished", "_iterable", "_sender")

    def __init__(self, iterable: Iterable[bytes], sender: type, environ: WSGIEnvironment) -> None:
        self._iterable = iterable
        self._sender = sender
        self._environ = environ
        self._finished = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            # A plain loop, not ``yield from``: if the server abandons this generator,
            # its GeneratorExit must not close the application's iterable a second
            # time behind close()'s back.
            for chunk in self._iterable:  # noqa: UP028
                yield chunk
        except Exception:
            try:
                got_request_exception.send_robust(sender=None, request=self._environ)
            finally:
                self._close_quietly()
            raise

    def close(self) -> None:
        """Close the application's iterable (if it has ``close``), then send
        ``request_finished``; later calls do nothing.
        """
        if self._finished:
            return
        self._finished = True
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            self._environ = {}  # keep nothing of the request once it is over
            request_finished.send_robust(sender=self._sender)

    def _close_quietly(self) -> None:
        # The body failed: finish now (a server need not call close() after an error),
        # without letting a failing close() replace the error being raised.
        try:
            self.close()
        except Exception:
            logger.exception(
                "Error closing the response body of %r after it failed", self._iterable
            )
