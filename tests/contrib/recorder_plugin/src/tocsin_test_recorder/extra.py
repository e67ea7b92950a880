"""Plugin ``test-extra``: records that it was imported, and every login."""

from __future__ import annotations

from typing import Any

import tocsin
from tocsin.signals import user_logged_in
from tocsin_test_recorder._record import record, write

write({"imported": "test-extra"})


@tocsin.receiver(user_logged_in)
def record_login(signal: tocsin.Signal, sender: Any, **named: Any) -> None:
    record("test-extra", signal, sender, named)
