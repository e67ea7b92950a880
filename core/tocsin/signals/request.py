"""Request/response signals, as ``django.core.signals`` declares them.

Who sends them:

* :class:`tocsin.contrib.wsgi.SignalsMiddleware` and
  :class:`tocsin.contrib.asgi.SignalsMiddleware`, around every request they serve
  (HTTP, and WebSocket for ASGI), with the arguments described below.  The
  middleware's module documentation says exactly when, and what happens when a
  receiver raises;
* :mod:`tocsin.contrib.flask`, relaying Flask's own request signals (``sender``: the
  application; ``environ``, ``response``, ``request`` and ``exception`` as Flask
  provides them);
* :mod:`tocsin.contrib.django`, relaying Django's own with Django's senders and
  arguments (its handler class; ``environ`` or ``scope``; for
  ``got_request_exception``, ``request`` is Django's ``HttpRequest``).
"""

from __future__ import annotations

from tocsin._signal import Signal

__all__ = ["got_request_exception", "request_finished", "request_started"]

#: Sent when a request starts, before the application is called.  ``sender``: the
#: middleware class.  Exactly one of ``environ`` (the WSGI environ, from the WSGI
#: middleware) or ``scope`` (the ASGI scope, from the ASGI middleware) is passed; a
#: receiver serving both takes ``environ=None, scope=None``.
request_started = Signal(
    providing_args=["environ", "scope"], name="tocsin.signals.request.request_started"
)

#: Sent once per request, when the response has been delivered (or the request ended
#: without one).  ``sender``: the middleware class.
request_finished = Signal(providing_args=[], name="tocsin.signals.request.request_finished")

#: Sent when the application raises while handling a request, inside the ``except``
#: block (a synchronous receiver may call ``sys.exc_info()``).  ``sender``: None;
#: ``request``: the WSGI environ or the ASGI scope.
got_request_exception = Signal(
    providing_args=["request"], name="tocsin.signals.request.got_request_exception"
)

# What integrations send beyond the documented arguments, so that a receiver requiring
# it is not refused at connect (the check of issue 16): Flask's request_finished adds
# response=, its got_request_exception exception=.
request_finished.registry.also_provides("response")
got_request_exception.registry.also_provides("exception")
