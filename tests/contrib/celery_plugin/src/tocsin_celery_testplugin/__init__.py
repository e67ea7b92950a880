"""Deferred receivers for tocsin's Celery tests (the plugin is ``.receivers``).

Importing this package imports nothing else: a worker whose operator disabled the
plugin may import ``.worker`` (the Celery app) without the receivers' code running.
"""
