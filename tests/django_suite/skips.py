"""The tests of Django's suite that the compatibility job skips, each with its reason.

Only tests that cannot pass for a reason outside tocsin's control belong here: they
check how django.dispatch is built (its private data, which functions it calls), not
what a signal does.  One entry per test method (``app.module.Class.test_name``) or
whole class.  ``send`` limits an entry to one of tocsin's sends ("c" or "pure");
``stock`` entries are about this environment, and are skipped on stock Django too
(``TOCSIN_DJANGO_SUITE_STOCK=1``).  An entry that matches no test fails a whole run.
"""

from __future__ import annotations

from typing import NamedTuple


class Skip(NamedTuple):
    test: str
    reason: str
    send: str | None = None  # "c" or "pure": only on that send; None: on both
    stock: bool = False  # also on stock Django: a limit of this environment


SKIPS: list[Skip] = [
    Skip(
        "model_fields.test_imagefield.ImageFieldNoDimensionsTests.test_post_init_not_connected",
        "unpacks post_init.receivers as django.dispatch's private entries "
        "((receiver_id, sender_id), ref, is_async); tocsin's Signal.receivers is its "
        "documented list of the live receivers",
    ),
    Skip(
        "signals.tests.SignalTests.test_lazy_model_signal",
        "mocks weakref.ref and asserts django.dispatch calls it for weak=True and not for "
        "weak=False; tocsin holds receivers with its own weakref.ref subclasses, bound "
        "at import",
    ),
    Skip(
        "invalid_models_tests.test_models.OtherModelTests.test_lazy_reference_checks",
        "Django's check_lazy_references recognises a pending ModelSignal.connect by "
        "(func.__module__, func.__name__) == ('django.dispatch.dispatcher', 'connect'); "
        "tocsin's connect is tocsin._signal's, so Django reports the generic models.E022 "
        "error instead of signals.E001 (still an error, worded otherwise)",
    ),
    Skip(
        "settings_tests.tests.TestComplexSettingOverride.test_complex_override_warning",
        "a Django receiver warns with stacklevel=5, which counts one Python frame for "
        "Signal.send between override_settings and the receiver; the C send calls "
        "receivers from C, with no frame (the pure send has the one frame)",
        send="c",
    ),
]
