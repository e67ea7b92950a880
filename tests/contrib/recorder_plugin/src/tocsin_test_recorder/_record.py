"""Append what a receiver got to the JSON lines file named by $TOCSIN_TEST_RECORD."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def write(entry: dict[str, Any]) -> None:
    with open(os.environ["TOCSIN_TEST_RECORD"], "a", encoding="utf-8") as file:
        file.write(json.dumps(entry, sort_keys=True) + "\n")


def describe(value: Any) -> Any:
    """A JSON-able summary of an argument, precise enough for the tests to assert on."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type):
        return f"type:{value.__module__}.{value.__qualname__}"
    if isinstance(value, dict):
        return {str(key): describe(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((describe(item) for item in value), key=json.dumps)
    if isinstance(value, (list, tuple)):
        return [describe(item) for item in value]
    if isinstance(value, BaseException):
        return {"exception": type(value).__name__, "message": str(value)}
    if hasattr(value, "_meta") and hasattr(value, "pk"):  # a Django model instance
        return {"model": type(value).__name__, "pk": value.pk}
    if hasattr(value, "get_models") and hasattr(value, "label"):  # a Django AppConfig
        return {"app": value.label}
    if hasattr(value, "get_id"):  # a Flask-Login user
        return {"user": type(value).__name__, "id": value.get_id()}
    if hasattr(value, "status_code"):  # a response
        return {"response": type(value).__name__, "status": value.status_code}
    if hasattr(value, "method") and hasattr(value, "path"):  # a request
        return {"request": type(value).__name__, "method": value.method, "path": value.path}
    return f"obj:{type(value).__qualname__}"


def record(by: str, signal: Any, sender: Any, named: dict[str, Any]) -> None:
    name = (signal.name or "?").rpartition(".")[2]
    entry: dict[str, Any] = {
        "by": by,
        "signal": name,
        "sender": describe(sender),
        "keys": sorted(named),
    }
    if name == "request_started":
        environ = named.get("environ") or {}
        entry["args"] = {"PATH_INFO": environ.get("PATH_INFO")}
    else:
        entry["args"] = {key: describe(value) for key, value in named.items()}
    if name == "got_request_exception":
        error = sys.exc_info()[1]
        entry["handling"] = None if error is None else type(error).__name__
    write(entry)
