"""Plugin ``test-recorder``: records every signal of tocsin's catalogue."""

from __future__ import annotations

from typing import Any

import tocsin
from tocsin import signals
from tocsin_test_recorder._record import record, write

write({"imported": "test-recorder"})

EVERY_SIGNAL = [getattr(signals, name) for name in signals.__all__]


@tocsin.receiver(EVERY_SIGNAL)
def record_everything(signal: tocsin.Signal, sender: Any, **named: Any) -> None:
    record("test-recorder", signal, sender, named)
