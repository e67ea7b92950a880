"""Test signals, as ``django.test.signals`` declares ``setting_changed``.

Who sends it:

* :func:`tocsin.testing.override_settings`, when it applies a value and again when it
  restores one;
* :mod:`tocsin.contrib.django`, relaying Django's own ``setting_changed`` (Django's
  ``override_settings`` and ``modify_settings``), with Django's sender and arguments.
"""

from __future__ import annotations

from tocsin._signal import Signal

__all__ = ["setting_changed"]

#: Sent twice per overridden setting.  ``sender``: the class of the object whose
#: setting changed (the object itself when it is a class or a module); ``setting``:
#: its name; ``value``: the value now in force (None when restoring a setting that did
#: not exist before); ``enter``: True when applied, False when restored.
setting_changed = Signal(
    providing_args=["setting", "value", "enter"], name="tocsin.signals.testing.setting_changed"
)
