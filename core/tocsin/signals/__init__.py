"""The built-in signal catalogue: the signals Django users know, grouped as Django
groups them, one module per family.

========== ==========================================================================
family     signals
========== ==========================================================================
auth       user_logged_in, user_logged_out, user_login_failed (credentials cleansed)
models     pre_init, post_init, pre_save, post_save, pre_delete, post_delete,
           m2m_changed, class_prepared
request    request_started, request_finished, got_request_exception
management pre_migrate, post_migrate
testing    setting_changed
db         connection_created
========== ==========================================================================

Importing this package imports no framework: only the standard library and tocsin.
"""

from __future__ import annotations

from tocsin.signals.auth import user_logged_in, user_logged_out, user_login_failed
from tocsin.signals.db import connection_created
from tocsin.signals.management import post_migrate, pre_migrate
from tocsin.signals.models import (
    class_prepared,
    m2m_changed,
    post_delete,
    post_init,
    post_save,
    pre_delete,
    pre_init,
    pre_save,
)
from tocsin.signals.request import got_request_exception, request_finished, request_started
from tocsin.signals.testing import setting_changed

__all__ = [
    "class_prepared",
    "connection_created",
    "got_request_exception",
    "m2m_changed",
    "post_delete",
    "post_init",
    "post_migrate",
    "post_save",
    "pre_delete",
    "pre_init",
    "pre_migrate",
    "pre_save",
    "request_finished",
    "request_started",
    "setting_changed",
    "user_logged_in",
    "user_logged_out",
    "user_login_failed",
]
