"""Receivers of the welcome-mail plugin (imported by the first send that needs them).

Mail is not really sent: what would be is kept in :data:`outbox`, for the demo.
"""

from __future__ import annotations

from typing import Any

#: (recipient, subject) of every mail the plugin would have sent.
outbox: list[tuple[str, str]] = []


def _name_of(user: Any) -> str:
    return str(getattr(user, "username", None) or user)


def on_login(sender: Any, user: Any, **kwargs: Any) -> str:
    outbox.append((_name_of(user), "Welcome back"))
    return "welcome mail queued"


def on_logout(sender: Any, user: Any, **kwargs: Any) -> str:
    outbox.append((_name_of(user), "See you soon"))
    return "goodbye mail queued"
