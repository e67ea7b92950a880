"""Helpers for testing code that uses tocsin.

:class:`override_settings` changes attributes of any object (or keys of any mutable
mapping) for the duration of a block or a test, and announces each change with
:data:`tocsin.signals.setting_changed`, as Django's ``override_settings`` does::

    from tocsin.testing import override_settings

    with override_settings(config, DEBUG=True, CACHE_TTL=0):
        ...

    @override_settings(os.environ, TZ="UTC")
    async def test_something(): ...

:func:`capture` records the sends of a signal and asserts on them, with failure
messages that show every send next to what was expected::

    from tocsin.testing import capture

    with capture(order_paid) as paid:
        checkout(cart)
    paid.assert_sent_once(sender=Shop, amount=12.5)

:func:`isolated_signals` puts every signal's connections back as they were, and
:func:`install_plugin_distribution` builds and installs a real plugin distribution for
a test.  None of this needs pytest; the pytest plugin (:mod:`tocsin.pytest_plugin`)
wraps it in fixtures.
"""

from __future__ import annotations

from tocsin.testing._capture import CAPTURE_PRIORITY, Captured, Expected, Sent, capture, sent
from tocsin.testing._distributions import (
    PluginDistribution,
    install_plugin_distribution,
    pip_install,
)
from tocsin.testing._isolation import isolated_signals, live_signals
from tocsin.testing._settings import override_settings

__all__ = [
    "CAPTURE_PRIORITY",
    "Captured",
    "Expected",
    "PluginDistribution",
    "Sent",
    "capture",
    "install_plugin_distribution",
    "isolated_signals",
    "live_signals",
    "override_settings",
    "pip_install",
    "sent",
]
