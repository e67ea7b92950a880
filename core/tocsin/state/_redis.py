"""The shared state in Redis (``pip install redis``), pushed to every process by pub/sub.

Keys, under a prefix (``tocsin:state`` by default)::

    PREFIX:version   an integer, increased by every write
    PREFIX:plugins   a hash: plugin name -> JSON {enabled, changed_at, changed_by, reason}
    PREFIX:changes   a list: the audit trail, newest first (the last 10,000 changes)
    PREFIX:changed   the pub/sub channel each write publishes its version on

A write is one Lua script, so the version, the switch, the audit entry and the
announcement are one atomic step.  Each process's background thread is subscribed to
the channel and reads the state when a message arrives; it also reads it after every
(re)subscription, so a message missed while disconnected is not a change missed.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from tocsin.state._backend import Backend, Change, PluginSwitch, check_name, now

__all__ = ["RedisBackend"]

#: How many changes the audit trail keeps.
AUDIT_LENGTH = 10_000

_WRITE = """
local version = redis.call('INCR', KEYS[1])
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
local change = cjson.decode(ARGV[3])
change['version'] = version
redis.call('LPUSH', KEYS[3], cjson.encode(change))
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', KEYS[4], version)
return version
"""


class RedisBackend(Backend):
    """The shared state in the Redis database at *url* (``redis://host:port/db``)."""

    def __init__(self, url: str, *, prefix: str = "tocsin:state", timeout: float = 2.0) -> None:
        super().__init__()
        import redis

        self.url = url
        self.prefix = prefix
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        kwargs = self._client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        self.description = f"redis {where} db {kwargs.get('db', 0)} ({prefix})"
        self._keys = [f"{prefix}:version", f"{prefix}:plugins", f"{prefix}:changes"]
        self.channel = f"{prefix}:changed"

    def version(self) -> object:
        return self._client.get(self._keys[0])

    def read(self) -> tuple[int, dict[str, PluginSwitch]]:
        pipe = self._client.pipeline(transaction=True)
        pipe.get(self._keys[0])
        pipe.hgetall(self._keys[1])
        raw_version, raw = pipe.execute()
        switches = {}
        for key, value in raw.items():
            name = key.decode()
            data = json.loads(value)
            switches[name] = PluginSwitch(
                name,
                bool(data["enabled"]),
                float(data["changed_at"]),
                str(data["changed_by"]),
                str(data["reason"]),
            )
        return int(raw_version or 0), switches

    def _record(self, name: str, enabled: bool | None, reason: str, who: str) -> Change:
        check_name(name)
        changed_at = now()
        state = ""
        if enabled is not None:
            state = json.dumps(
                {"enabled": enabled, "changed_at": changed_at, "changed_by": who, "reason": reason}
            )
        host, pid = socket.gethostname(), os.getpid()
        change = {
            "name": name,
            "enabled": enabled,
            "changed_at": changed_at,
            "changed_by": who,
            "reason": reason,
            "host": host,
            "pid": pid,
        }
        version = self._client.eval(
            _WRITE, 4, *self._keys, self.channel, name, state, json.dumps(change), AUDIT_LENGTH
        )
        return Change(name, enabled, changed_at, who, reason, host, pid, int(version))

    def write(self, name: str, enabled: bool, reason: str, who: str) -> Change:
        return self._record(name, bool(enabled), reason, who)

    def forget(self, name: str, reason: str, who: str) -> Change | None:
        return self._record(name, None, reason, who)

    def history(self, name: str | None = None, limit: int = 100) -> list[Change]:
        found = []
        for raw in self._client.lrange(self._keys[2], 0, -1):
            data = json.loads(raw)
            if name is not None and data["name"] != name:
                continue
            enabled = data.get("enabled")
            found.append(
                Change(
                    data["name"],
                    None if enabled is None else bool(enabled),
                    float(data["changed_at"]),
                    data["changed_by"],
                    data["reason"],
                    data["host"],
                    int(data["pid"]),
                    int(data["version"]),
                )
            )
            if len(found) >= limit:
                break
        return found

    def listen(self, wake: Callable[[], None], stop: threading.Event) -> bool:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
            wake()  # whatever changed before the subscription took
            while not stop.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is not None and message.get("type") == "message":
                    wake()
        finally:
            try:
                pubsub.close()
            except Exception:
                pass
        return True

    def close(self) -> None:
        self._client.close()
