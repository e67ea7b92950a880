"""How long each plugin takes to import, measured where a slow or hanging one can do
no harm: each enabled plugin is imported in a fresh interpreter of its own, which is
stopped (its whole process group killed) when the time limit passes.

``tocsin doctor --import-times`` reports :func:`import_times`; a plugin that blocks at
import would otherwise block ``load()`` forever without saying which one it is.

The child interpreter starts with this process's ``sys.path``, working directory and
environment, imports :mod:`tocsin` first (not counted), then signals that it is
ready; the clock, and the time limit, start there.  What is timed is what ``load()``
does for the plugin: import its entry point's module and get the object it names (or,
for a plugin whose receivers are only declared in metadata, import the modules that
define them).  The plugin's own output is sent to stderr; the result travels on the
child's stdout.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import IO, TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from tocsin._manager import PluginManager

__all__ = ["DEFAULT_TIMEOUT", "ImportTime", "import_times"]

#: The default time limit for one plugin's import, in seconds.
DEFAULT_TIMEOUT = 10.0
#: How long a child interpreter may take to start and import tocsin (not counted in the
#: plugin's time, nor in its limit).
STARTUP_SECONDS = 60.0


class ImportTime(NamedTuple):
    """One plugin's import, timed in a process of its own."""

    #: The plugin's name (its entry point's).
    plugin: str
    #: How long its import took; None if it failed or was stopped at the time limit.
    seconds: float | None
    #: Why it has no time: the exception its import raised (``"ValueError: ..."``), or
    #: that it was still importing at the time limit.  None if it imported.
    error: str | None


_CHILD = r"""
import importlib, json, os, sys, time
spec = json.loads(sys.argv[1])
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # the plugin's own prints go to stderr, not into the result
sys.stdout = sys.stderr
sys.path[:] = spec["path"]
import tocsin
out.write("ready\n")
out.flush()
start = time.perf_counter()
try:
    for module, attribute in spec["targets"]:
        obj = importlib.import_module(module)
        for part in (attribute or "").split("."):
            if part:
                obj = getattr(obj, part)
except BaseException as error:
    result = {"error": f"{type(error).__name__}: {error}"}
else:
    result = {"seconds": time.perf_counter() - start}
out.write(json.dumps(result) + "\n")
out.flush()
os._exit(0)
"""


def import_times(
    group: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    manager: PluginManager | None = None,
) -> list[ImportTime]:
    """Import each plugin ``load()`` would enable, each in a fresh interpreter, and
    return how long each took, in plugin-name order.

    *group* is the entry-point group (default ``tocsin.plugins``, or *manager*'s), and
    the settings that say which plugins are enabled are *manager*'s (a manager with no
    options of its own, reading the environment and pyproject.toml, by default).  A
    plugin still importing after *timeout* seconds is stopped and reported with
    ``seconds=None`` and an error saying so; one whose import raises, with the
    exception.  Nothing is imported into this process.
    """
    from tocsin._manager import DEFAULT_GROUP, PluginManager, plugin_imports

    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}.")
    if manager is None:
        manager = PluginManager(group or DEFAULT_GROUP)
    elif group is not None and group != manager.group:
        raise ValueError(f"group {group!r} is not the manager's group {manager.group!r}.")
    return [_time_one(name, targets, timeout) for name, targets in plugin_imports(manager)]


def _time_one(name: str, targets: list[tuple[str, str | None]], timeout: float) -> ImportTime:
    spec = json.dumps({"path": sys.path, "targets": targets})
    with open(os.devnull, "wb") as devnull:
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, spec],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=devnull,
            start_new_session=True,  # a process group of its own, to stop as a whole
        )
    assert process.stdout is not None
    lines = _Lines(process.stdout)
    try:
        if lines.next(STARTUP_SECONDS) != "ready":
            return ImportTime(
                name,
                None,
                f"the interpreter to import it in did not start within {STARTUP_SECONDS:g} "
                f"s (exit code {process.poll()})",
            )
        line = lines.next(timeout)
        if line is None:
            if process.poll() is None:
                return ImportTime(
                    name, None, f"still importing after {timeout:g} s (stopped at the limit)"
                )
            return ImportTime(
                name, None, f"its import ended the interpreter (exit code {process.wait()})"
            )
        result = json.loads(line)
        if "error" in result:
            return ImportTime(name, None, str(result["error"]))
        return ImportTime(name, float(result["seconds"]), None)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        killpg = getattr(os, "killpg", None)
        try:
            if killpg is None:
                raise ProcessLookupError
            killpg(process.pid, signal.SIGKILL)  # the plugin's own children too
        except (ProcessLookupError, PermissionError):
            process.kill()
    process.wait()  # its stdout is closed by the thread reading it, at its end


class _Lines:
    """Lines from a pipe, each waited for at most a given time (a thread reads them)."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: IO[bytes]) -> None:
        try:
            for line in iter(pipe.readline, b""):
                self.queue.put(line.decode("utf-8", "replace").rstrip("\n"))
        except (OSError, ValueError):
            pass
        finally:
            pipe.close()
        self.queue.put(None)

    def next(self, seconds: float) -> str | None:
        """The next line; None if none came within *seconds* or the pipe closed."""
        try:
            return self.queue.get(timeout=seconds)
        except queue.Empty:
            return None
