"""Django integration (``pip install tocsin[django]``).

Add the app, and Django's built-in signals reach tocsin receivers, plugins included::

    INSTALLED_APPS = [
        "tocsin.contrib.django",     # early: it relays class_prepared from the start
        "django.contrib.auth",
        ...
    ]
    TOCSIN = {"disabled": ["noisy-plugin"]}   # optional; see tocsin.contrib.django.apps

Every signal of Django's six built-in families is relayed to the tocsin catalogue
signal of the same name (:mod:`tocsin.signals`), with the same sender and arguments:
see :mod:`tocsin.contrib.django.relay`.  :func:`mirror` does the same for a project's
own ``django.dispatch.Signal``, so receivers can move into plugins one at a time.

Importing this package imports ``django.dispatch`` only: no settings, no models.
"""

from __future__ import annotations

from tocsin.contrib.django.mirror import mirror, unmirror

__all__ = ["mirror", "unmirror"]
