"""Greets every request that a tocsin request integration announces."""

from __future__ import annotations

import logging
from typing import Any

from tocsin import receiver
from tocsin.signals import request_started

logger = logging.getLogger(__name__)

greeted: list[str] = []


@receiver(request_started, dispatch_uid="legacy-greeter")
def greet(sender: Any, environ: Any = None, scope: Any = None, **kwargs: Any) -> str:
    path = (environ or {}).get("PATH_INFO") or (scope or {}).get("path") or "?"
    greeted.append(path)
    logger.info("Hello, request for %s", path)
    return f"hello {path}"
