"""Integrations that send the built-in signals from real frameworks, one module each.

:mod:`tocsin.contrib.wsgi`
    ``SignalsMiddleware`` for any WSGI application (Flask, Django, Bottle, ...).
:mod:`tocsin.contrib.asgi`
    ``SignalsMiddleware`` for any ASGI application (Starlette, FastAPI, Django, ...).

Each module imports only the standard library and tocsin, so importing one never pulls
in a framework; the framework is whatever application you wrap.
"""
