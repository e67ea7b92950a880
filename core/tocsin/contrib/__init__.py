"""Integrations with real frameworks, one module (or package) each.

:mod:`tocsin.contrib.wsgi`
    ``SignalsMiddleware`` for any WSGI application (Flask, Django, Bottle, ...): the
    request signals around every request.
:mod:`tocsin.contrib.asgi`
    ``SignalsMiddleware`` for any ASGI application (Starlette, FastAPI, Django, ...):
    the request signals around every HTTP request and WebSocket connection.
:mod:`tocsin.contrib.sqlalchemy`
    ``connect_signals()``: the model signals (``pre_init`` ... ``m2m_changed``,
    ``class_prepared``) from SQLAlchemy's ORM, and ``connection_created`` from an
    engine.
:mod:`tocsin.contrib.alembic`
    ``migration_signals()``: ``pre_migrate`` and ``post_migrate`` around an Alembic
    migration run.
:mod:`tocsin.contrib.django`
    a Django app relaying every Django built-in signal to the catalogue signal of the
    same name, ``mirror()`` for a project's own signals, and plugins loaded from
    ``settings.TOCSIN``.
:mod:`tocsin.contrib.flask`
    a Flask extension relaying Flask's request signals and Flask-Login's login and
    logout, and loading plugins from ``app.config["TOCSIN"]``.
:mod:`tocsin.contrib.celery`
    ``deferred()``: a receiver that runs in a Celery worker rather than in the sender.

``wsgi`` and ``asgi`` import only the standard library and tocsin, so importing one
never pulls in a framework; the framework is whatever application you wrap.  The others
import their framework, and come with the extra of its name (``tocsin[sqlalchemy]``,
which brings Alembic too, ``tocsin[django]``, ``tocsin[flask]``, ``tocsin[celery]``).
"""
