"""Where the receivers write what they saw: a Redis list the tests read."""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import redis

EVENTS = "tocsin-test:events"


@functools.cache
def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["TOCSIN_TEST_REDIS"])


def record(kind: str, **fields: Any) -> None:
    event = {
        "kind": kind,
        "pid": os.getpid(),
        "worker": os.environ.get("TOCSIN_TEST_WORKER"),
        "time": time.time(),
        **fields,
    }
    client().rpush(EVENTS, json.dumps(event, default=repr))
