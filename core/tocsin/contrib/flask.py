"""Flask integration (``pip install tocsin[flask]``): Flask's signals reach tocsin.

::

    from flask import Flask
    from tocsin.contrib.flask import Tocsin

    app = Flask(__name__)
    app.config["TOCSIN"] = {"disabled": ["noisy-plugin"]}   # optional
    Tocsin(app)                  # or: tocsin_ext = Tocsin(); tocsin_ext.init_app(app)

``init_app(app)`` relays, for that application only (its receivers are connected to
Flask's blinker signals with ``sender=app`` and ``weak=False``):

=============================== ==========================================================
Flask signal                    tocsin catalogue signal
=============================== ==========================================================
``request_started``             ``request_started(sender=app, environ=request.environ)``
``request_finished``            ``request_finished(sender=app, response=response)``
``got_request_exception``       ``got_request_exception(sender=app, request=request,
                                exception=error)``, inside Flask's ``except`` block
Flask-Login ``user_logged_in``  ``user_logged_in(sender=type(user), request=request,
                                user=user, app=app)``
Flask-Login ``user_logged_out`` ``user_logged_out(sender=type(user), request=request,
                                user=user, app=app)``; an anonymous user is sent as
                                ``user=None`` (``sender`` then ``type(None)``), as Django's
                                ``logout()`` does
=============================== ==========================================================

``request`` is the :class:`flask.Request` itself, not the context-bound proxy, so a
receiver may keep it.  Every argument Flask sends is passed on (``response``,
``exception``, and the application as ``app`` for Flask-Login's signals, whose sender
becomes the user's class as in Django).  A tocsin receiver's exception propagates, as
a blinker receiver's does.

A relay is connected to its blinker signal only while its tocsin signal is active (has
a receiver, for any sender): ``init_app`` *enables* the relays of the application,
which watch their tocsin signals (:meth:`tocsin.Signal.watch_activity`), connect when
the first tocsin receiver connects (at once if one is connected already) and
disconnect when the last one goes.  With no tocsin receiver Flask's signals have no
receiver from tocsin at all, as in an application without the extension.  A connected
relay still asks the tocsin signal ``has_listeners(sender)`` and does nothing more when
no tocsin receiver would run.

Flask-Login is optional: its signals are relayed when it is importable.  It has no
login-failed signal; a login view reports a failure itself, and tocsin masks the
credentials::

    from tocsin.signals import user_login_failed
    user_login_failed.send(sender=__name__, credentials=request.form.to_dict(),
                           request=request)

Plugins load into the process-wide :data:`tocsin.plugins` from
``app.config["TOCSIN"]``, a dict with the keys of Django's ``settings.TOCSIN``
(``autoload``, ``disabled``, ``plugins``, ``strict``; see
:mod:`tocsin.contrib._plugins`).  An unknown key or a wrong value raises
:class:`~tocsin.PluginConfigError` before anything is connected.  The manager is one
per process: with several applications, the last ``init_app`` decides.

``init_app`` also registers :func:`tocsin.state.check` as a ``before_request``
function: a process that follows a shared plugin state (``TOCSIN_STATE``, see
:mod:`tocsin.state`) applies a change at the start of the next request, at most one
backend read per interval (nearly free when no shared state is configured).
"""

from __future__ import annotations

import importlib
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flask
from flask import signals as flask_signals

from tocsin import Signal
from tocsin.contrib._plugins import apply_plugin_settings, plugin_options
from tocsin.signals import (
    got_request_exception,
    request_finished,
    request_started,
    user_logged_in,
    user_logged_out,
)
from tocsin.state import check as check_shared_state

if TYPE_CHECKING:
    from tocsin._manager import PluginManager

__all__ = ["Tocsin", "connect_relays", "disconnect_relays", "flask_login_available"]


def _current_request() -> flask.Request:
    """The request being handled, itself rather than the context-bound proxy."""
    proxy: Any = flask.request
    return proxy._get_current_object()  # type: ignore[no-any-return]


# Each relay is connected only while its tocsin signal is active, and still asks
# ``has_listeners(sender)``: a tocsin receiver may listen to another sender only.


def _on_request_started(sender: flask.Flask, **extra: Any) -> None:
    if request_started.has_listeners(sender):
        request_started.send(sender, environ=flask.request.environ, **extra)


def _on_request_finished(sender: flask.Flask, **extra: Any) -> None:
    if request_finished.has_listeners(sender):
        request_finished.send(sender, **extra)


def _on_got_request_exception(sender: flask.Flask, **extra: Any) -> None:
    if got_request_exception.has_listeners(sender):
        got_request_exception.send(sender, request=_current_request(), **extra)


def _on_user_logged_in(sender: flask.Flask, user: Any = None, **extra: Any) -> None:
    user_class = type(user)
    if user_logged_in.has_listeners(user_class):
        user_logged_in.send(user_class, request=_current_request(), user=user, app=sender, **extra)


def _on_user_logged_out(sender: flask.Flask, user: Any = None, **extra: Any) -> None:
    if not getattr(user, "is_authenticated", True):
        user = None
    user_class = type(user)
    if user_logged_out.has_listeners(user_class):
        user_logged_out.send(user_class, request=_current_request(), user=user, app=sender, **extra)


def _flask_login_signals() -> Any:
    """Flask-Login's signals module, or None when Flask-Login is not installed."""
    try:
        return importlib.import_module("flask_login.signals")
    except ImportError:
        return None


def flask_login_available() -> bool:
    """Whether Flask-Login is importable, so that its signals are relayed."""
    return _flask_login_signals() is not None


Relayed = tuple[Any, Callable[..., None], Signal]


def _relays() -> list[Relayed]:
    """(blinker signal, relay, tocsin signal) for every relayed signal."""
    relays: list[Relayed] = [
        (flask_signals.request_started, _on_request_started, request_started),
        (flask_signals.request_finished, _on_request_finished, request_finished),
        (flask_signals.got_request_exception, _on_got_request_exception, got_request_exception),
    ]
    login = _flask_login_signals()
    if login is not None:
        relays.append((login.user_logged_in, _on_user_logged_in, user_logged_in))
        relays.append((login.user_logged_out, _on_user_logged_out, user_logged_out))
    return relays


# The applications whose relays are enabled (weakly: the relays never kept an app
# alive), and the tocsin signals watched for them.  Changed only under _lock.
_lock = threading.RLock()
_apps: weakref.WeakSet[flask.Flask] = weakref.WeakSet()
_watched: list[Signal] = []


def _sync(relays: list[Relayed], target: Signal) -> None:
    """Connect the relays to *target* for every enabled app if *target* is active,
    else disconnect them (lock held; reads the state now, so the last sync wins)."""
    active = target.is_active()
    apps = list(_apps)
    for flask_signal, relay, tocsin_signal in relays:
        if tocsin_signal is not target:
            continue
        for app in apps:  # blinker keeps one connection per receiver and sender
            if active:
                flask_signal.connect(relay, sender=app, weak=False)
            else:
                flask_signal.disconnect(relay, sender=app)


def _on_activity(target: Signal) -> None:
    """The activity watcher of every relayed tocsin signal."""
    with _lock:
        _sync(_relays(), target)


def connect_relays(app: flask.Flask) -> bool:
    """Enable *app*'s relays (see the module documentation); enabling twice is a no-op.
    Returns whether Flask-Login's signals are relayed too.  :meth:`Tocsin.init_app`
    calls it; call it yourself only to restore relays :func:`disconnect_relays` removed.
    """
    relays = _relays()
    with _lock:
        _apps.add(app)
        for _, _, target in relays:
            if target not in _watched:
                target.watch_activity(_on_activity)
                _watched.append(target)
        for target in _watched:
            _sync(relays, target)
    return len(relays) > 3


def disconnect_relays(app: flask.Flask) -> None:
    """Stop relaying *app*'s signals to tocsin (plugins stay loaded).  With no
    application left, the tocsin signals are no longer watched."""
    with _lock:
        _apps.discard(app)
        for flask_signal, relay, _ in _relays():
            flask_signal.disconnect(relay, sender=app)
        if not _apps:
            for target in _watched:
                target.unwatch_activity(_on_activity)
            _watched.clear()


class Tocsin:
    """The Flask extension: relays Flask's (and Flask-Login's) signals to tocsin and
    loads tocsin plugins from ``app.config["TOCSIN"]``.  See the module documentation.
    """

    def __init__(self, app: flask.Flask | None = None) -> None:
        #: The process-wide plugin manager, once :meth:`init_app` has run.
        self.plugins: PluginManager | None = None
        #: Whether Flask-Login's signals are relayed (it was importable).
        self.relays_flask_login = False
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Relay *app*'s signals and load plugins from its ``TOCSIN`` config.

        Calling it again for the same application connects nothing twice (blinker
        keeps one connection per receiver and sender).
        """
        where = f"app.config['TOCSIN']{{key}} of Flask app {app.name!r}"  # see _plugins
        config = app.config.get("TOCSIN")
        plugin_options(config, where)  # a wrong setting fails before anything changes
        self.relays_flask_login = connect_relays(app)
        if check_shared_state not in app.before_request_funcs.get(None, []):
            app.before_request(check_shared_state)
        app.extensions["tocsin"] = self
        self.plugins = apply_plugin_settings(config, where)
