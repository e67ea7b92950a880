"""Login and logout signals, as ``django.contrib.auth.signals`` declares them.

Who sends them:

* :mod:`tocsin.contrib.django` relays Django's own three (``django.contrib.auth``
  sends them from ``login()``, ``logout()`` and ``authenticate()``), with Django's
  sender and arguments;
* :mod:`tocsin.contrib.flask` relays Flask-Login's ``user_logged_in`` and
  ``user_logged_out`` (sender: the user's class).  Flask-Login has no login-failed
  signal: a login view sends ``user_login_failed`` itself;
* your own authentication code, with the same names Django receivers expect.

``user_login_failed`` never hands secrets to its receivers: it is a
:class:`CredentialsSignal`, whose every send method replaces ``credentials`` by
:func:`cleanse_credentials` (a masked copy) before any receiver is called.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tocsin._send import Responses
from tocsin._signal import Signal

__all__ = [
    "CLEANSED_SUBSTITUTE",
    "SENSITIVE_PATTERNS",
    "CredentialsSignal",
    "cleanse_credentials",
    "user_logged_in",
    "user_logged_out",
    "user_login_failed",
]

#: Case-insensitive substrings: a credential whose key contains one is masked.  The
#: union of Django's two lists (``django.contrib.auth._clean_credentials``: api, token,
#: key, secret, password, signature; ``SafeExceptionReporterFilter.hidden_settings``:
#: API, AUTH, TOKEN, KEY, SECRET, PASS, SIGNATURE, HTTP_COOKIE) and a few more.  A
#: substring match masks too much rather than too little ("monkey", "author").
SENSITIVE_PATTERNS: tuple[str, ...] = (
    "pass",  # password, passwd, passphrase, passcode
    "pwd",
    "token",
    "secret",
    "key",
    "api",
    "signature",
    "auth",
    "credential",
    "private",
    "cookie",
    "session",
)

#: What a sensitive value is replaced by (Django's string, so logs look the same).
CLEANSED_SUBSTITUTE = "********************"

_SENSITIVE = re.compile("|".join(map(re.escape, SENSITIVE_PATTERNS)), re.IGNORECASE)


def cleanse_credentials(credentials: Mapping[Any, Any]) -> dict[Any, Any]:
    """Return a copy of *credentials* with every sensitive value masked.

    A key is sensitive when it contains one of :data:`SENSITIVE_PATTERNS`, ignoring
    case (a key that is not a ``str`` is judged by its ``str()``).  Its value becomes
    :data:`CLEANSED_SUBSTITUTE`, whatever it was.  Values that are mappings, lists or
    tuples are cleansed in turn, so ``{"user": {"password": ...}}`` is masked too.
    The argument itself is never modified.

    >>> cleanse_credentials({"username": "ada", "password": "hunter2"})
    {'username': 'ada', 'password': '********************'}
    """
    if not isinstance(credentials, Mapping):
        raise TypeError(
            f"user_login_failed: credentials must be a mapping of names to values, not "
            f"{type(credentials).__name__}; send credentials={{'username': ...}}."
        )
    return _cleanse_mapping(credentials, set())


def _is_sensitive(key: Any) -> bool:
    return _SENSITIVE.search(key if isinstance(key, str) else str(key)) is not None


def _cleanse_mapping(mapping: Mapping[Any, Any], seen: set[int]) -> dict[Any, Any]:
    seen.add(id(mapping))
    try:
        return {
            key: CLEANSED_SUBSTITUTE if _is_sensitive(key) else _cleanse_value(value, seen)
            for key, value in mapping.items()
        }
    finally:
        seen.discard(id(mapping))


def _cleanse_value(value: Any, seen: set[int]) -> Any:
    if isinstance(value, (Mapping, list, tuple)) and id(value) in seen:
        return CLEANSED_SUBSTITUTE  # a container that contains itself: stop here
    if isinstance(value, Mapping):
        return _cleanse_mapping(value, seen)
    if isinstance(value, (list, tuple)):
        seen.add(id(value))
        try:
            items = [_cleanse_value(item, seen) for item in value]
        finally:
            seen.discard(id(value))
        return items if isinstance(value, list) else tuple(items)
    return value


class CredentialsSignal(Signal):
    """A :class:`~tocsin.Signal` that cleanses its ``credentials`` argument.

    ``send``, ``send_robust``, ``asend`` and ``asend_robust`` replace a ``credentials``
    argument by :func:`cleanse_credentials` of it before calling anything, so no
    receiver, however connected, sees a sensitive value.  ``credentials=None`` is
    passed on as None; anything else that is not a mapping raises ``TypeError``
    before any receiver is called (it could not be cleansed).
    """

    def send(self, sender: Any, **named: Any) -> Responses:
        _cleanse_named(named)
        return super().send(sender, **named)

    def send_robust(self, sender: Any, **named: Any) -> Responses:
        _cleanse_named(named)
        return super().send_robust(sender, **named)

    async def asend(self, sender: Any, **named: Any) -> Responses:
        _cleanse_named(named)
        return await super().asend(sender, **named)

    async def asend_robust(self, sender: Any, **named: Any) -> Responses:
        _cleanse_named(named)
        return await super().asend_robust(sender, **named)


def _cleanse_named(named: dict[str, Any]) -> None:
    # *named* is the send call's own fresh dict of keyword arguments: replacing the
    # entry here never touches the caller's credentials dict.
    credentials = named.get("credentials")
    if credentials is not None:
        named["credentials"] = cleanse_credentials(credentials)


#: Sent when a user logs in successfully.  ``sender``: the user's class;
#: ``request``: the current request (or None); ``user``: the user who logged in.
user_logged_in = Signal(
    providing_args=["request", "user"], name="tocsin.signals.auth.user_logged_in"
)

#: Sent when a user logs out.  ``sender``: the user's class, or None if the user was
#: not authenticated; ``request``: the current request; ``user``: the user, or None.
user_logged_out = Signal(
    providing_args=["request", "user"], name="tocsin.signals.auth.user_logged_out"
)

#: Sent when a login attempt fails.  ``sender``: the name of the module that tried
#: to authenticate; ``credentials``: the keyword arguments given to it, with sensitive
#: values masked (see :func:`cleanse_credentials`); ``request``: the request, or None.
user_login_failed = CredentialsSignal(
    providing_args=["credentials", "request"], name="tocsin.signals.auth.user_login_failed"
)

# What integrations send beyond the documented arguments, so that a receiver requiring
# it is not refused at connect (the check of issue 16): the Flask bridge adds app= (the
# Flask application) to Flask-Login's sends.
user_logged_in.registry.also_provides("app")
user_logged_out.registry.also_provides("app")
