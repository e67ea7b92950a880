"""From a URL to a backend; other packages may add schemes (Django adds ``django``)."""

from __future__ import annotations

from collections.abc import Callable

from tocsin.state._backend import Backend

__all__ = ["open_backend", "register_scheme"]

_schemes: dict[str, Callable[[str], Backend]] = {}


def register_scheme(prefix: str, factory: Callable[[str], Backend]) -> None:
    """Let :func:`open_backend` open URLs ``PREFIX`` and ``PREFIX:...`` with *factory*
    (``tocsin.contrib.django`` registers ``django`` this way)."""
    _schemes[prefix] = factory


def open_backend(url: str) -> Backend:
    """The backend a URL names.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a plain file path
        SQLite, with the standard library (nothing to install, nothing to run);
    ``redis://host:port/db`` (or ``rediss://``, ``unix://``)
        Redis, with pub/sub pushing every change (``pip install redis``);
    ``django`` or ``django:ALIAS``
        the Django project's database (``tocsin.contrib.django`` in INSTALLED_APPS,
        its migration applied);
    any other URL with a scheme (``postgresql+psycopg://...``, ``mysql://...``)
        that database through SQLAlchemy (``pip install tocsin[sqlalchemy]``).
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"A shared-state URL must be a non-empty str, not {url!r}.")
    url = url.strip()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    for prefix, factory in _schemes.items():
        if url == prefix or url.startswith(prefix + ":"):
            return factory(url)
    if url == "django" or url.startswith("django:"):
        raise ValueError(
            f"Shared-state URL {url!r} names Django's database: add "
            f"'tocsin.contrib.django' to INSTALLED_APPS and call django.setup() first."
        )
    if scheme in ("redis", "rediss", "unix"):
        from tocsin.state._redis import RedisBackend

        return RedisBackend(url)
    if scheme == "sqlite" or scheme == "":
        from tocsin.state._sqlite import SQLiteBackend

        path = url[len("sqlite:///") :] if scheme == "sqlite" else url
        if scheme == "sqlite" and not url.startswith("sqlite:///"):
            raise ValueError(f"A SQLite URL is sqlite:///path (three slashes), not {url!r}.")
        return SQLiteBackend(path)
    from tocsin.state._sqlalchemy import SQLAlchemyBackend

    return SQLAlchemyBackend(url)
