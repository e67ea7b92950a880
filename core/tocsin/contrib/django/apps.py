"""The Django app: add ``"tocsin.contrib.django"`` to ``INSTALLED_APPS``.

What it does, and when:

Every relay is connected to its Django signal only while its tocsin signal has a
receiver (see :mod:`tocsin.contrib.django.relay`); below, *enables* means: connects it
now if a tocsin receiver is there already, and when the first one connects otherwise.

``TocsinConfig.__init__`` (while Django populates the app registry, before any
model module is imported)
    enables the ``class_prepared`` relay.  Django sends ``class_prepared`` as each
    model class is created, which for the project's own models happens before any
    ``ready()`` runs, so (as Django's documentation advises for this signal) the relay
    is enabled from ``AppConfig.__init__``, which imports no model and does not use
    the registry: a tocsin receiver of ``class_prepared`` connected before
    ``django.setup()`` sees the project's model classes.  List ``tocsin.contrib.django``
    before the apps whose model classes it should see.  Note that plugins are loaded
    in ``ready()``, after those classes were prepared: a plugin receiver sees
    ``class_prepared`` only for model classes created later (the historical models
    that ``migrate`` builds, models made at run time).  A receiver that needs the
    project's own classes reads them from the app registry in a ``post_migrate``
    receiver or from ``apps.get_models()``.

``TocsinConfig.ready()``
    1. enables the relay of every other built-in signal (see
       :mod:`tocsin.contrib.django.relay`): auth, models, request, management,
       ``setting_changed`` and ``connection_created``; and connects its own
       ``setting_changed`` receiver for ``TOCSIN``, kept after the relay (a plugin
       hears the change that disables it, not the one that enables it again);
    2. loads tocsin plugins into the process-wide :data:`tocsin.plugins` according to
       ``settings.TOCSIN`` (see :mod:`tocsin.contrib._plugins`)::

           TOCSIN = {
               "autoload": True,             # import enabled plugins at all
               "disabled": ["acme-audit"],   # never imported
               "plugins": ["acme-audit", "signal-counter"],  # allow-list
               "strict": False,              # a plugin that fails raises
           }

       A key left out keeps the manager's default (or ``[tool.tocsin]`` in
       pyproject.toml); the ``TOCSIN_*`` environment variables override the dict.
       A key tocsin does not know, or a value of the wrong type, raises
       :class:`~django.core.exceptions.ImproperlyConfigured` naming it.  With
       ``"strict": True`` a plugin that fails to import stops Django's start-up with
       :class:`~tocsin.PluginLoadError`; otherwise it is warned about and the others
       load.

    Running ``ready()`` again (some test set-ups do) connects nothing twice: every
    relay has a ``dispatch_uid``, and plugins already loaded are not loaded again.

Also in ``ready()``, before plugins load: the shared plugin state
    (:mod:`tocsin.state`).  The URL ``django`` opens the tables of this app's
    migration (:mod:`tocsin.contrib.django.state`), ``settings.TOCSIN_STATE`` names the
    state to follow (``TOCSIN_STATE`` in the environment wins), and the start of
    every request applies changes made since (at most one read per interval).  The
    admin toggles plugins (:mod:`tocsin.contrib.django.admin`).

``override_settings(TOCSIN=...)``
    applies the new dict to the plugin manager for the duration (a plugin the new
    dict does not want is disabled, one it wants is enabled) and the project's own
    ``TOCSIN`` again on the way out, so a Django test can switch plugins off and on.
"""

from __future__ import annotations

import types
import warnings
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started as django_request_started

from tocsin._errors import PluginConfigError
from tocsin.contrib._plugins import apply_plugin_settings, plugin_options
from tocsin.contrib.django.relay import RELAYED, connect_after_relay, connect_relays
from tocsin.state import check as check_shared_state
from tocsin.state import configure as configure_shared_state

WHERE = "settings.TOCSIN"


def load_plugins(config: object) -> None:
    """Apply a ``TOCSIN`` dict to :data:`tocsin.plugins` (Django's error on a bad one)."""
    try:
        apply_plugin_settings(config, WHERE)
    except PluginConfigError as error:
        raise ImproperlyConfigured(str(error)) from error


def _check_shared_state(**named: Any) -> None:
    check_shared_state()


def follow_shared_state() -> None:
    """The shared plugin state (:mod:`tocsin.state`) in a Django process: the URL
    ``django`` opens this database's tables; ``settings.TOCSIN_STATE`` configures one
    (``TOCSIN_STATE`` in the environment still wins); each request's start checks for
    changes (at most once per interval)."""
    from tocsin.contrib.django import state  # noqa: F401  (registers the "django" URL)

    url = getattr(settings, "TOCSIN_STATE", None)
    if url is not None:
        import tocsin

        manager = tocsin.plugins
        if manager.shared_state is None:
            # Plugins load in ready(), and a plugin switched off must not be imported,
            # so the state is read here: the one query Django's "database access during
            # app initialization" warning is about is deliberate.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Accessing the database", RuntimeWarning)
                configure_shared_state(url, manager)
    django_request_started.connect(
        _check_shared_state, weak=False, dispatch_uid="tocsin.contrib.django:state"
    )


def _tocsin_setting_changed(setting: str, value: Any = None, **named: Any) -> None:
    if setting == "TOCSIN":
        load_plugins(value)


__all__ = ["TocsinConfig"]


class TocsinConfig(AppConfig):
    """Relays Django's built-in signals to tocsin's and loads tocsin plugins."""

    name = "tocsin.contrib.django"
    label = "tocsin"
    verbose_name = "tocsin signals and plugins"

    def __init__(self, app_name: str, app_module: types.ModuleType | None) -> None:
        super().__init__(app_name, app_module)
        connect_relays(["class_prepared"])

    def ready(self) -> None:
        config = getattr(settings, "TOCSIN", None)
        try:
            plugin_options(config, WHERE)  # a bad setting fails before anything changes
        except PluginConfigError as error:
            raise ImproperlyConfigured(str(error)) from error
        follow_shared_state()
        connect_relays([name for name in RELAYED if name != "class_prepared"])
        connect_after_relay(
            "setting_changed", _tocsin_setting_changed, "tocsin.contrib.django:TOCSIN"
        )
        load_plugins(config)
