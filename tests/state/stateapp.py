"""The WSGI application the multi-process tests run under gunicorn.

It loads the test plugins (group ``tocsinstate.plugins``) into its own manager, which
follows the shared state ``TOCSIN_STATE`` names, and answers each request with the
worker's pid and which plugins are enabled in it.  ``tocsin.contrib.wsgi`` sends the
request signals (and checks the shared state at each request start).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from typing import Any

import tocsin
from tocsin.contrib.wsgi import SignalsMiddleware

logging.basicConfig(level=logging.INFO, format="%(process)d %(name)s %(levelname)s %(message)s")

manager = tocsin.PluginManager("tocsinstate.plugins", use_cache=False)
manager.load()


def ready() -> None:
    """Say this process has loaded (or, forked by ``--preload``, restarted its
    shared-state listener: tocsin.state's own fork hook ran before this one)."""
    with open(os.path.join(os.environ["STATE_TEST_OUT"], "ready.log"), "a") as out:
        out.write(f"{os.getpid()}\n")


ready()
os.register_at_fork(after_in_child=ready)


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = json.dumps({"pid": os.getpid(), "enabled": {n: manager.is_enabled(n) for n in manager}})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


application = SignalsMiddleware(app)
