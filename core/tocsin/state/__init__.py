"""The shared plugin state: which plugins are enabled, for a whole deployment.

``tocsin.plugins.disable("acme-audit")`` switches a plugin off in one process.  A
*shared state* switches it off in every process of a deployment (web workers, Celery
workers, cron jobs), persists the choice across restarts, and records who switched
what, when and why::

    TOCSIN_STATE=sqlite:////var/lib/shop/tocsin.db      # or redis://..., postgresql+psycopg://...
    tocsin plugins disable acme-audit --reason "timeouts to the audit service"

or from Python::

    from tocsin.state import set_plugin_state
    set_plugin_state("acme-audit", False, reason="timeouts", who="ops@example.com")

**Where it is** (first that sets it): the environment ``TOCSIN_STATE``; the code
(``PluginManager(state=...)`` or :func:`configure`); ``state = "..."`` in
``[tool.tocsin]``.  ``TOCSIN_STATE=off`` switches a configured one off.  URLs:
see :func:`open_backend`.

**Which plugins load**, from the strongest: (1) the environment
(``TOCSIN_DISABLED_PLUGINS``, ``TOCSIN_PLUGINS``, ``TOCSIN_DISABLE_PLUGIN_AUTOLOAD``):
a plugin it switches off stays off whatever the shared state says; (2) the shared
state's switch for that plugin, if it has one; (3) the code's arguments, then
``[tool.tocsin]``, then the defaults.  So an operator's switch in the shared state
overrides what the application ships, and the operator's environment overrides both.

**Start-up**: ``PluginManager.load()`` reads the state before importing anything, so
a plugin switched off there is never imported.  **Propagation**: every process applies
a change with the manager's own ``enable()``/``disable()``, never on the send path —
from a background thread (Redis: pushed by pub/sub; SQL: a cheap version check every
``interval`` seconds, default 1), and at the start of each request through the
integrations (:func:`check`, rate-limited to once per interval).  A process-local
``enable()``/``disable()`` stays until the shared switch of that plugin changes.

**An unreachable backend** never stops a process: it keeps its last known state, logs
once (and once more when the backend answers again), and retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tocsin._errors import PluginConfigError, PluginLoadError, TocsinError
from tocsin._settings import PluginSettings, resolve_state_settings
from tocsin.state._backend import Backend, Change, PluginSwitch, check_name, default_who
from tocsin.state._open import open_backend, register_scheme

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "Backend",
    "Change",
    "PluginRow",
    "PluginSwitch",
    "SharedState",
    "SharedStateError",
    "StateReport",
    "attach",
    "check",
    "check_name",
    "configure",
    "current",
    "open_backend",
    "plugin_history",
    "read_shared_state",
    "register_scheme",
    "reset_plugin_state",
    "set_plugin_state",
]

logger = logging.getLogger("tocsin.state")


class SharedStateError(TocsinError):
    """No shared state is configured, or it cannot be written."""


class Manager(Protocol):
    """What a shared state needs of a :class:`tocsin.PluginManager`."""

    def __contains__(self, name: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def settings(self) -> PluginSettings: ...
    def is_enabled(self, name: str) -> bool: ...
    def enable(self, name: str) -> None: ...
    def disable(self, name: str) -> None: ...
    def use_shared_state(self, shared: Any) -> None: ...
    @property
    def shared_state(self) -> Any: ...


def _environment_blocks(settings: PluginSettings, name: str) -> str | None:
    """The environment variable that switches *name* off, if one does."""
    sources = settings.sources
    if not settings.autoload and sources.get("autoload", "").startswith("environment"):
        return sources["autoload"]
    if name in settings.disabled and sources.get("disabled", "").startswith("environment"):
        return sources["disabled"]
    allowed = settings.allowed
    if (
        allowed is not None
        and name not in allowed
        and sources.get("allowed", "").startswith("environment")
    ):
        return sources["allowed"]
    return None


class SharedState:
    """One process's view of a shared state, applied to one plugin manager.

    *backend* is a :class:`Backend` or a URL (:func:`open_backend`).  With *manager*
    (a :class:`tocsin.PluginManager`), changes are applied to it; without, the object
    only reads and writes (what a command-line tool needs).  *interval* bounds how
    stale a process may be: the background thread polls that often (SQL backends), and
    :meth:`check` reads the backend at most that often.
    """

    def __init__(
        self,
        backend: Backend | str,
        manager: Manager | None = None,
        *,
        interval: float = 1.0,
        background: bool = True,
    ) -> None:
        self.backend = open_backend(backend) if isinstance(backend, str) else backend
        self.manager = manager
        self.interval = float(interval)
        self.background = background
        #: The last state read: version (None before the first read) and switches.
        self.version: int | None = None
        self.switches: Mapping[str, PluginSwitch] = {}
        #: False while the backend cannot be reached; the error that said so.
        self.reachable = True
        # Guards the reachable flag's flips, so that the follower thread and a request's
        # check, failing at once, say so once between them.
        self._reachability = threading.Lock()
        self.last_error: BaseException | None = None
        self._token: object = None
        self._refreshing = threading.Lock()
        self._next_check = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _all.add(self)

    def __repr__(self) -> str:
        return f"<SharedState {self.backend.description} version={self.version}>"

    # -- what the manager asks --------------------------------------------------------

    def wants(self, name: str, settings: PluginSettings) -> bool:
        """Whether *name* should be enabled: the environment, then this state's switch,
        then the rest of *settings* (see the module documentation)."""
        switch = self.switches.get(name)
        if switch is None:
            return settings.wants(name)
        return switch.enabled and _environment_blocks(settings, name) is None

    # -- reading and applying ---------------------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        """Read the backend if its version moved (or *force*), apply what changed, and
        return whether anything did.  Never raises for an unreachable backend."""
        if not self._refreshing.acquire(blocking=force):
            return False  # another thread is at it now
        try:
            try:
                token = self.backend.version()
                if not force and self.version is not None and token == self._token:
                    self._reached()
                    return False
                version, switches = self.backend.read()
            except Exception as error:
                self._unreachable(error)
                return False
            self._reached()
            self._token = token
            if version == self.version and not force:
                return False
            first = self.version is None
            old, self.switches, self.version = self.switches, switches, version
            changed = {n for n in old.keys() | switches.keys() if old.get(n) != switches.get(n)}
            if changed:
                logger.info(
                    "Shared plugin state %s is at version %d; applying %s.",
                    self.backend.description,
                    version,
                    ", ".join(sorted(changed)),
                )
            self._apply(switches.keys() if first else changed)
            return bool(changed)
        finally:
            self._refreshing.release()

    def _apply(self, names: Iterable[str]) -> None:
        manager = self.manager
        if manager is None:
            return
        try:
            settings = manager.settings()
        except PluginConfigError as error:
            logger.warning("Cannot apply the shared plugin state: %s", error)
            return
        for name in sorted(names):
            if name not in manager:
                continue  # not installed here (yet): load() asks wants() when it is
            wanted = self.wants(name, settings)
            try:
                if wanted and not manager.is_enabled(name):
                    manager.enable(name)
                elif not wanted and manager.is_enabled(name):
                    manager.disable(name)
            except PluginLoadError as error:
                logger.warning("Shared plugin state enables %r, which failed: %s", name, error)
            except Exception:
                logger.exception("Applying the shared switch of plugin %r failed", name)

    def check(self) -> None:
        """Refresh if *interval* seconds passed since the last check and no background
        thread is following the backend: what the request-start hooks call (a clock
        read and a comparison when there is nothing to do)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.interval
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        self.refresh()

    def _unreachable(self, error: BaseException) -> None:
        with self._reachability:
            self.last_error = error
            if not self.reachable:
                return
            self.reachable = False
        logger.warning(
            "Shared plugin state %s cannot be reached (%s: %s); this process keeps "
            "its last known state (version %s) and tries again every %gs.",
            self.backend.description,
            type(error).__name__,
            error,
            self.version,
            self.interval,
        )

    def _reached(self) -> None:
        with self._reachability:
            if self.reachable:
                return
            self.reachable = True
            self.last_error = None
        logger.warning("Shared plugin state %s answers again.", self.backend.description)

    # -- writing ----------------------------------------------------------------------

    def set(self, name: str, enabled: bool, reason: str = "", who: str | None = None) -> Change:
        """Switch *name* on or off for every process, record it, and apply it here now.
        Raises (:class:`SharedStateError`) when the backend cannot be written."""
        try:
            change = self.backend.write(name, enabled, reason or "", who or default_who())
        except ValueError:
            raise
        except Exception as error:
            raise SharedStateError(
                f"Cannot write the shared plugin state {self.backend.description}: "
                f"{type(error).__name__}: {error}"
            ) from error
        self.refresh(force=True)
        return change

    def reset(self, name: str, reason: str = "", who: str | None = None) -> Change | None:
        """Remove *name*'s shared switch: processes go back to their configuration."""
        try:
            change = self.backend.forget(name, reason or "", who or default_who())
        except ValueError:
            raise
        except Exception as error:
            raise SharedStateError(
                f"Cannot write the shared plugin state {self.backend.description}: "
                f"{type(error).__name__}: {error}"
            ) from error
        self.refresh(force=True)
        return change

    def history(self, name: str | None = None, limit: int = 100) -> list[Change]:
        """The audit trail, newest first."""
        return self.backend.history(name, limit)

    # -- the background thread --------------------------------------------------------

    def start(self) -> None:
        """Follow the backend from a daemon thread (idempotent; restarted in a forked
        child by itself)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        self.background = True
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._follow, name="tocsin-shared-state", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread (waits for it at most *interval* + 1 s)."""
        self.background = False
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.interval + 1)

    def close(self) -> None:
        """Stop following and release the backend's connections."""
        self.stop()
        self.backend.close()
        _detach(self)

    def __enter__(self) -> SharedState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Closes it: ``with SharedState(url, background=False) as state: ...``."""
        self.close()

    def _follow(self) -> None:
        # The state was read just before the thread started: a backend that pushes
        # subscribes at once (and reads again once subscribed); the others wait first.
        stop = self._stop
        while not stop.is_set():
            try:
                pushed = self.backend.listen(self._pushed, stop)
            except Exception as error:
                self._unreachable(error)
                pushed = False
            if not pushed:
                if stop.wait(self.interval):
                    break
                self.refresh()

    def _pushed(self) -> None:
        self.refresh()

    def _after_fork(self) -> None:
        self._refreshing = threading.Lock()
        self._next_check = 0.0
        running = self._thread is not None
        self._thread = None
        if running and self.background:
            self.start()


# Every SharedState of this process (for forks), and those attached to a manager (for
# check()); _attached is replaced, never changed in place, so check() reads it unlocked.
_all: weakref.WeakSet[SharedState] = weakref.WeakSet()
_attached: list[SharedState] = []
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    for state in list(_all):
        state._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def attach(
    manager: Manager,
    url: str | None = None,
    pyproject: str | None = None,
    *,
    interval: float | None = None,
    background: bool = True,
) -> SharedState | None:
    """Make *manager* follow the shared state the settings name (the environment, then
    *url*, then ``[tool.tocsin]``); None, and nothing changes, if they name none.

    ``PluginManager.load()`` calls it the first time.  The state is read at once (so
    ``load()`` knows which plugins not to import), switches already in it are applied
    to plugins already loaded, and a background thread follows it from then on."""
    settings = resolve_state_settings(url=url, interval=interval, pyproject=pyproject)
    if settings.url is None:
        return None
    try:
        backend = open_backend(settings.url)
    except (ImportError, ValueError) as error:
        # A URL no backend can open is a setting to fix, not an outage to ride out.
        raise PluginConfigError(
            f"The shared plugin state {settings.url!r} (from {settings.sources['url']}) "
            f"cannot be opened: {type(error).__name__}: {error}"
        ) from error
    state = SharedState(backend, manager, interval=settings.interval, background=background)
    _follow(manager, state)
    return state


def configure(
    url: str | Backend,
    manager: Manager,
    *,
    interval: float | None = None,
    background: bool = True,
) -> SharedState | None:
    """Make *manager* (usually :data:`tocsin.plugins`) follow the shared state at *url*
    (a URL, see :func:`open_backend`, or a :class:`Backend`), unless ``TOCSIN_STATE``
    names another one or ``off``: the operator's environment wins.  Returns the state
    (None when the environment switched it off).  Call it before ``load()`` so that
    switched-off plugins are never imported; called later, it applies the switches to
    the plugins already loaded."""
    if isinstance(url, Backend):
        resolved = resolve_state_settings(interval=interval)
        from_environment = resolved.sources["url"].startswith("environment")
        chosen: Backend | str | None = resolved.url if from_environment else url
    else:
        resolved = resolve_state_settings(url=url, interval=interval)
        chosen = resolved.url
    if chosen is None:
        manager.use_shared_state(None)
        return None
    state = SharedState(chosen, manager, interval=resolved.interval, background=background)
    _follow(manager, state)
    return state


def _follow(manager: Manager, state: SharedState) -> None:
    previous = manager.shared_state
    if isinstance(previous, SharedState):
        previous.close()
    state.refresh(force=True)  # before use_shared_state: wants() then knows the switches
    manager.use_shared_state(state)
    global _attached
    with _lock:
        _attached = [*(s for s in _attached if s.manager is not manager), state]
    if state.background:
        state.start()


def _detach(state: SharedState) -> None:
    global _attached
    with _lock:
        _attached = [s for s in _attached if s is not state]


def current() -> SharedState | None:
    """The shared state the process-wide manager (or else the first manager to attach
    one) follows, if any."""
    states = _attached
    return states[0] if states else None


def check() -> None:
    """Apply any change of the shared state, at most once per interval: call it where a
    unit of work starts (a request, a Celery task).  Nearly free when nothing is due,
    or when no shared state is configured."""
    for state in _attached:
        state.check()


# -- for the command line ------------------------------------------------------------


@contextlib.contextmanager
def _state(manager: Manager | None) -> Iterator[SharedState]:
    """The shared state *manager* follows, else the one attached in this process, else
    one opened from the settings for this call only (and closed after it)."""
    if manager is not None and isinstance(manager.shared_state, SharedState):
        yield manager.shared_state
        return
    state = current()
    if state is not None:
        yield state
        return
    settings = resolve_state_settings()
    if settings.url is None:
        raise SharedStateError(
            "No shared plugin state is configured: set TOCSIN_STATE (a SQLite file, "
            "redis://..., a SQLAlchemy URL or 'django'), or state = '...' in [tool.tocsin] "
            "of pyproject.toml."
        )
    with SharedState(settings.url, None, interval=settings.interval, background=False) as state:
        yield state


def set_plugin_state(
    name: str,
    enabled: bool,
    reason: str = "",
    who: str | None = None,
    *,
    manager: Manager | None = None,
) -> Change:
    """Switch plugin *name* on or off in the shared state, for every process.

    *who* defaults to ``user@host``.  Recorded in the audit trail with *reason*, and
    applied to *manager* (default: whichever manager follows the state in this
    process) at once; the other processes apply it within their interval.  Raises
    :class:`SharedStateError` when no shared state is configured or it cannot be
    written."""
    with _state(manager) as state:
        return state.set(name, enabled, reason, who)


def reset_plugin_state(
    name: str, reason: str = "", who: str | None = None, *, manager: Manager | None = None
) -> Change | None:
    """Remove *name*'s shared switch: every process goes back to its own
    configuration for it.  None if there was no switch."""
    with _state(manager) as state:
        return state.reset(name, reason, who)


def plugin_history(
    name: str | None = None, limit: int = 100, *, manager: Manager | None = None
) -> list[Change]:
    """The audit trail (of *name* only, if given), newest first."""
    with _state(manager) as state:
        return state.history(name, limit)


@dataclass(frozen=True)
class PluginRow:
    """One plugin as :func:`read_shared_state` sees it."""

    name: str
    #: The shared switch, or None when the shared state does not mention it.
    shared: PluginSwitch | None
    #: What this process's settings alone want (environment, code, pyproject.toml);
    #: None for a plugin this process does not have installed.
    configured: bool | None
    #: The environment variable that forces it off whatever the shared state says.
    environment: str | None
    #: What this process should do: the settings and the shared switch together.
    wanted: bool | None
    #: Whether it is enabled in this process now (None: not installed here).
    local: bool | None

    @property
    def override(self) -> bool:
        """A process-local enable()/disable() differs from what is wanted (or the
        change has not been applied yet)."""
        return self.local is not None and self.wanted is not None and self.local != self.wanted


@dataclass(frozen=True)
class StateReport:
    """What :func:`read_shared_state` returns."""

    #: Where the state is (None: no shared state is configured).
    backend: str | None
    reachable: bool
    error: str | None
    version: int | None
    plugins: tuple[PluginRow, ...]

    def __getitem__(self, name: str) -> PluginRow:
        for row in self.plugins:
            if row.name == name:
                return row
        raise KeyError(name)


def read_shared_state(manager: Manager | None = None, *, refresh: bool = True) -> StateReport:
    """Every plugin's shared switch, local setting and state, and any process-local
    override, for *manager* (default: the one following the shared state; pass
    :data:`tocsin.plugins`, loaded, from a command).  Without a manager only the
    shared switches are listed.

    Never raises for an unreachable backend: ``reachable`` is False and ``error``
    says why (what ``tocsin doctor`` reports)."""
    with contextlib.ExitStack() as stack:
        try:
            state: SharedState | None = stack.enter_context(_state(manager))
        except SharedStateError:
            state = None
        return _report(state, manager, refresh)


def _report(state: SharedState | None, manager: Manager | None, refresh: bool) -> StateReport:
    if manager is None and state is not None:
        manager = state.manager
    if state is not None and refresh:
        state.refresh(force=True)
    switches = dict(state.switches) if state is not None else {}
    settings: PluginSettings | None = None
    names: set[str] = set(switches)
    if manager is not None:
        names |= set(manager)
        try:
            settings = manager.settings()
        except PluginConfigError:
            pass
    rows = []
    for name in sorted(names):
        installed = manager is not None and name in manager
        configured = settings.wants(name) if settings is not None and installed else None
        environment = _environment_blocks(settings, name) if settings is not None else None
        if not installed or settings is None:
            wanted = None
        elif state is not None:
            wanted = state.wants(name, settings)
        else:
            wanted = configured
        local = manager.is_enabled(name) if manager is not None and installed else None
        rows.append(PluginRow(name, switches.get(name), configured, environment, wanted, local))
    return StateReport(
        backend=state.backend.description if state is not None else None,
        reachable=state.reachable if state is not None else True,
        error=(
            f"{type(state.last_error).__name__}: {state.last_error}"
            if state is not None and state.last_error is not None
            else None
        ),
        version=state.version if state is not None else None,
        plugins=tuple(rows),
    )
