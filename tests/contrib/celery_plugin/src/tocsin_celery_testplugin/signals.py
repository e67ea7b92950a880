"""The signals the test plugin's deferred receivers listen to (named: workers find
receivers by signal name)."""

from __future__ import annotations

from tocsin import Signal

ping = Signal(providing_args=["token"], name="celerytest.ping")
unique = Signal(providing_args=["token"], name="celerytest.unique")
order_saved = Signal(providing_args=["instance", "token"], name="celerytest.order_saved")
note_saved = Signal(providing_args=["instance", "token"], name="celerytest.note_saved")
flaky = Signal(providing_args=["token", "fail_times"], name="celerytest.flaky")
doomed = Signal(providing_args=["token"], name="celerytest.doomed")
slow = Signal(providing_args=["token"], name="celerytest.slow")
asynchronous = Signal(providing_args=["token"], name="celerytest.async")
other = Signal(providing_args=["token"], name="celerytest.other")
outboxed = Signal(providing_args=["token"], name="celerytest.outboxed")
