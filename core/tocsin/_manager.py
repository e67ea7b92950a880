"""PluginManager: receivers from installed distributions, on pluggy.

A plugin is an object — usually the module an entry point of the ``tocsin.plugins``
group names — whose functions are marked by ``@receiver``.  The manager registers it
with a :class:`pluggy.PluginManager` (so it may also implement tocsin's lifecycle
hooks), records exactly which connections it owns, and disconnects or restores exactly
those when the plugin is disabled or enabled.  A disabled plugin is blocked in pluggy,
and a plugin disabled before it was ever imported is never imported.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import pluggy

from tocsin import _hookspecs
from tocsin._declared import (
    Declaration,
    DeclarationError,
    DeclaredReceiver,
    parse_declaration,
    problems,
    resolve_path,
)
from tocsin._discovery import Discovery, PluginEntry, discover
from tocsin._errors import PluginLoadError, TocsinPluginWarning
from tocsin._info import OwnedReceiver, PluginInfo
from tocsin._plugin_objects import declared_by
from tocsin._registry import owned_by
from tocsin._settings import PluginSettings, resolve_settings
from tocsin._signal import ReceiverMark, Signal, declared_receivers

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from tocsin._registry import Connection

__all__ = ["DEFAULT_GROUP", "PluginManager", "failure_location", "plugin_imports", "public_name"]

logger = logging.getLogger("tocsin.plugins")

DEFAULT_GROUP = "tocsin.plugins"


class _PluggyManager(pluggy.PluginManager):
    """pluggy's manager, with a fast "no" for the common attribute of the common plugin.

    ``register()`` asks :meth:`parse_hookimpl_opts` about every attribute of a plugin,
    and pluggy answers through :func:`inspect.getattr_static` (some 10 us a call; a
    module has a dozen attributes, so 300 plugins spent ~30 ms there at startup).  For
    a plain module and a name that ``ModuleType`` does not define itself, that lookup is
    the module's ``__dict__`` entry, so an entry that cannot be a hook implementation is
    answered from there (see :func:`_hookable`).  Everything that might be one goes to
    pluggy unchanged.
    """

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        if type(plugin) is types.ModuleType and name not in _MODULE_TYPE_NAMES:
            value = plugin.__dict__.get(name, _ABSENT)
            if value is not _ABSENT and not _hookable(value, self.project_name):
                return None
        return super().parse_hookimpl_opts(plugin, name)


def _new_pluggy_manager() -> pluggy.PluginManager:
    """A pluggy manager for tocsin's hooks."""
    pm = _PluggyManager(_hookspecs.PROJECT)
    pm.add_hookspecs(_hookspecs)
    return pm


def _hookable(value: object, project: str = "tocsin") -> bool:
    """Whether pluggy might find a hook implementation in a module attribute *value*:
    a function marked by the project's ``hookimpl`` (or with a ``__func__``), or a
    static, class or bound method.  Anything else pluggy skips too."""
    if type(value) is types.FunctionType:
        own = value.__dict__
        return bool(own) and (project + "_impl" in own or "__func__" in own)
    return isinstance(value, _METHOD_TYPES)


_METHOD_TYPES = (staticmethod, classmethod, types.MethodType)


_ABSENT = object()
#: Names a module's own ``__dict__`` does not decide (``ModuleType`` defines them).
_MODULE_TYPE_NAMES = frozenset(dir(types.ModuleType))


class _Plugin:
    """The manager's own, mutable record of a plugin (guarded by the manager's lock)."""

    def __init__(self, name: str, entry: PluginEntry | None, obj: object | None = None):
        self.name = name
        self.entry = entry
        self.obj = obj
        self.enabled = False
        self.error: BaseException | None = None
        self.declared: list[tuple[Callable[..., Any], ReceiverMark]] = []
        self.owned: dict[int, Connection] = {}  # index into declared -> live connection
        # Connections its tocsin_plugin_enabled hook made: dropped when it is disabled,
        # made again by the hook when it is enabled again.
        self.hooked: list[Connection] = []
        # What disable() dropped, by index into declared: enable() puts these very
        # connections back, in their places in the dispatch order.
        self.dropped: dict[int, Connection] = {}
        # Receivers declared in entry-point metadata (tocsin._declared), and the
        # stand-ins connected for them until the plugin's code is first needed.
        self.declarations: list[Declaration] = []
        self.declared_in: PluginEntry | None = None  # the first declaration's entry
        self.standins: list[Connection] = []
        self.resolved: dict[Declaration, Callable[..., Any]] = {}

    def info(self) -> PluginInfo:
        receivers = tuple(
            OwnedReceiver(
                mark.signal,
                func,
                mark.sender,
                mark.dispatch_uid,
                mark.priority,
                index in self.owned,
            )
            for index, (func, mark) in enumerate(self.declared)
        )
        receivers += tuple(
            OwnedReceiver(
                c.registry.signal,  # type: ignore[arg-type]  # always a Signal here
                standin,
                c.sender,
                c.dispatch_uid,
                c.priority,
                c.alive() and c.registry.connections.get(c.lookup_key) is c,
            )
            for c in self.standins
            if (standin := c.receiver) is not None
        )
        entry = self.entry or self.declared_in
        return PluginInfo(
            name=self.name,
            distribution=entry.distribution if entry else None,
            version=entry.version if entry else None,
            enabled=self.enabled,
            loaded=self.obj is not None,
            error=self.error,
            receivers=receivers,
            entry_point=entry.value if entry else None,
            plugin=self.obj,
        )


class PluginManager(Mapping[str, PluginInfo]):
    """Finds, registers, enables and disables the plugins of one entry-point group.

    A read-only mapping of plugin name to :class:`PluginInfo`.  The arguments give the
    application's defaults for which plugins load; the environment overrides them and
    ``[tool.tocsin]`` in pyproject.toml fills in what neither sets (see
    :mod:`tocsin._settings`).  Every method is safe to call from any thread.
    """

    def __init__(
        self,
        group: str = DEFAULT_GROUP,
        *,
        autoload: bool | None = None,
        disabled: Iterable[str] | None = None,
        allowed: Iterable[str] | None = None,
        strict: bool | None = None,
        pyproject: str | None = None,
        use_cache: bool = True,
        state: str | None = None,
    ) -> None:
        if not isinstance(group, str) or not group:
            raise TypeError(f"group must be a non-empty str, not {group!r}.")
        self.group = group
        self._options: dict[str, Any] = {
            "autoload": autoload,
            "disabled": _names_argument(disabled),
            "allowed": _names_argument(allowed),
            "strict": strict,
            "pyproject": pyproject,
        }
        self._use_cache = use_cache
        self._lock = threading.RLock()
        self._plugins: dict[str, _Plugin] = {}
        self._forgotten: set[str] = set()
        self._reported: set[tuple[str, ...]] = set()
        # Every plugin is registered (and every disabled name blocked) here.
        self._pm: pluggy.PluginManager = _new_pluggy_manager()
        self.last_discovery: Discovery | None = None
        # Where strict mode comes from, while a strict load() runs (for its messages).
        self._strict_source: str | None = None
        # The shared plugin state (tocsin.state) that load() consults, once attached.
        self._state_url = state
        self._shared: _SharedPolicy | None = None
        self._shared_resolved = False

    def __repr__(self) -> str:
        enabled = sum(p.enabled for p in self._plugins.values())
        return f"<PluginManager {self.group!r}: {len(self._plugins)} plugins, {enabled} enabled>"

    # -- the mapping ------------------------------------------------------------------

    def __getitem__(self, name: str) -> PluginInfo:
        with self._lock:
            return self._get(name).info()

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._plugins))

    def __len__(self) -> int:
        return len(self._plugins)

    def __contains__(self, name: object) -> bool:
        return name in self._plugins

    def _get(self, name: str) -> _Plugin:
        plugin = self._plugins.get(name)
        if plugin is None:
            known = ", ".join(sorted(self._plugins)) or "none"
            raise KeyError(f"No plugin named {name!r} in {self.group!r}. Known plugins: {known}.")
        return plugin

    @property
    def hook(self) -> pluggy.HookRelay:
        """pluggy's hook relay, to call tocsin's (or your own) hooks on enabled plugins."""
        return self._pm.hook

    @property
    def pluggy_manager(self) -> pluggy.PluginManager:
        """The pluggy manager underneath (for ``add_hookspecs`` of your own hooks)."""
        return self._pm

    def settings(self) -> PluginSettings:
        """The switches ``load()`` would use now, with where each one came from."""
        return resolve_settings(**self._options)

    # -- loading ----------------------------------------------------------------------

    def load(self, strict: bool | None = None, *, verify: bool = False) -> list[str]:
        """Discover the group's entry points; import and connect every enabled one.

        Returns the names newly enabled.  Plugins load in name order.  A plugin that
        declares its receivers in entry-point metadata (the ``<group>.receivers``
        group, see :mod:`tocsin._declared`) is not imported: stand-ins are connected
        in its receivers' places, and its code is imported by the first send that
        reaches one.  With *verify*, every declared receiver is checked first without
        running the plugin's code (its module is findable and defines the name), and a
        plugin with a wrong declaration fails to load.

        A plugin that fails is isolated: its error is kept on ``PluginInfo.error``,
        warned about and logged, and the others load; with ``strict`` (or the strict
        setting) a :class:`PluginLoadError` is raised once all were tried.  Calling
        ``load()`` again only considers plugins not seen before.

        .. versionchanged:: 0.1 receivers declared in entry points; *verify*.
        """
        with self._lock:
            self._attach_shared_state()
            settings = self.settings()
            if strict is None:
                strict, strict_source = settings.strict, settings.sources.get("strict", "")
            else:
                strict_source = f"load(strict={strict!r})"
            # A strict load raises its failures: they are reported by that, not warned.
            report = not strict
            self._strict_source = strict_source if strict else None
            try:
                return self._load(settings, strict, report, verify)
            finally:
                self._strict_source = None

    def _load(
        self, settings: PluginSettings, strict: bool, report: bool, verify: bool
    ) -> list[str]:
        with self._lock:
            found = discover(self.group, use_cache=self._use_cache)
            self.last_discovery = found
            self._report_clashes(found)
            entries = {entry.name: entry for entry in found.entries}
            declarations, unreadable = _read_declarations(found.declared)
            failures: list[PluginLoadError] = []
            enabled: list[str] = []
            for name in sorted(entries.keys() | declarations.keys() | unreadable.keys()):
                if name in self._plugins or name in self._forgotten:
                    continue
                plugin = _Plugin(name, entries.get(name))
                plugin.declarations = [d for d, _ in declarations.get(name, [])]
                if name in declarations:
                    plugin.declared_in = declarations[name][0][1]
                self._plugins[name] = plugin
                if not self._wants(settings, name):
                    self._pm.set_blocked(name)
                    logger.debug("Plugin %r is installed but not enabled.", name)
                    continue
                try:
                    if name in unreadable:
                        error = DeclarationError("; ".join(unreadable[name]))
                        raise self._failed(plugin, error, "declares receivers wrongly", report)
                    if verify and plugin.declarations:
                        found_problems = [p for d in plugin.declarations for p in problems(d)]
                        if found_problems:
                            error = DeclarationError("; ".join(found_problems))
                            raise self._failed(plugin, error, "failed verification", report)
                    self._enable(plugin, report)
                except PluginLoadError as error:
                    failures.append(error)
                else:
                    enabled.append(name)
            self._report_unknown_names(settings)
        if strict and failures:
            if len(failures) == 1:
                raise failures[0]
            details = "; ".join(
                f"{f.plugin!r}: {public_name(type(f.__cause__))}: {f.__cause__}" for f in failures
            )
            raise PluginLoadError(
                f"{len(failures)} plugins failed to load ({details}). load() raises this "
                f"because strict mode is on ({self._strict_source}); the plugins that did "
                f"load stay loaded. Fix or uninstall them, or list them in "
                f"TOCSIN_DISABLED_PLUGINS to start without them.",
                None,
                failures,
            )
        return enabled

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin by hand (a module, a class instance) and enable it.

        Its ``@receiver``-marked functions or methods are connected, and its hooks
        registered with pluggy.  Returns the name it is registered under.
        """
        if plugin is None or isinstance(plugin, (str, bytes, int, float)):
            raise TypeError(
                f"register() takes a plugin object (a module or an instance), not "
                f"{plugin!r}; to load an installed plugin by name use enable()."
            )
        if name is None:
            try:
                name = getattr(plugin, "__name__", None)
            except Exception:  # an object that cannot be asked: named by its type
                name = None
            name = name or type(plugin).__qualname__
        if not isinstance(name, str) or not name:
            raise TypeError(f"A plugin name must be a non-empty str, not {name!r}.")
        with self._lock:
            if name in self._plugins:
                raise ValueError(
                    f"A plugin named {name!r} is already registered in {self.group!r}; "
                    f"unregister it first or pass another name."
                )
            record = _Plugin(name, None, plugin)
            self._plugins[name] = record
            self._forgotten.discard(name)
            try:
                self._enable(record, report=False)
            except BaseException:  # rolled back by _enable; forgotten here
                del self._plugins[name]
                raise
        return name

    def unregister(self, name: str) -> None:
        """Disconnect a plugin's receivers and forget it.

        An installed plugin is not found again by later ``load()`` calls in this
        process; ``register()`` it by hand to bring it back.
        """
        with self._lock:
            plugin = self._get(name)
            if plugin.enabled:
                self._disable(plugin)
            if self._pm.is_blocked(name):
                self._pm.unblock(name)
            del self._plugins[name]
            if plugin.entry is not None:
                self._forgotten.add(name)

    # -- the shared plugin state (tocsin.state) ----------------------------------------

    @property
    def shared_state(self) -> Any:
        """The :class:`tocsin.state.SharedState` this manager follows, or None."""
        return self._shared

    def use_shared_state(self, shared: _SharedPolicy | None) -> None:
        """Follow *shared* (a :class:`tocsin.state.SharedState`; None: none) from now
        on: ``load()`` and :meth:`wants` ask it.  :func:`tocsin.state.configure` calls
        this; by itself it enables or disables nothing."""
        with self._lock:
            self._shared = shared
            self._shared_resolved = True

    def wants(self, name: str) -> bool:
        """Whether *name* should be enabled now: the settings (environment, code,
        pyproject.toml), then the shared state's switch, which the environment still
        overrides (see :mod:`tocsin.state`)."""
        with self._lock:
            return self._wants(self.settings(), name)

    def _wants(self, settings: PluginSettings, name: str) -> bool:
        shared = self._shared
        return settings.wants(name) if shared is None else shared.wants(name, settings)

    def _attach_shared_state(self) -> None:
        """On the first load(), follow the shared state the settings name, if any
        (``TOCSIN_STATE``, ``PluginManager(state=...)``, ``state`` in [tool.tocsin])."""
        if self._shared_resolved:
            return
        self._shared_resolved = True
        from tocsin import state

        state.attach(self, self._state_url, self._options["pyproject"])

    # -- switching --------------------------------------------------------------------

    def is_enabled(self, name: str) -> bool:
        with self._lock:
            return self._get(name).enabled

    def enable(self, name: str) -> None:
        """Enable a plugin: import it if it never was, then connect its receivers.

        If that fails, the plugin stays disabled (nothing of it stays connected), its
        error is kept, and :class:`PluginLoadError` is raised.
        """
        with self._lock:
            plugin = self._get(name)
            if not plugin.enabled:
                self._enable(plugin, report=False)

    def disable(self, name: str) -> None:
        """Disable a plugin now: disconnect its receivers and block its hooks."""
        with self._lock:
            plugin = self._get(name)
            if plugin.enabled:
                self._disable(plugin)
            if not self._pm.is_blocked(name):
                self._pm.set_blocked(name)

    def _enable(self, plugin: _Plugin, report: bool = True) -> None:
        """Import (if needed), inspect, register and connect; undo everything on failure.

        A plugin with declared receivers that was never imported gets its stand-ins
        instead: its import waits for the first send that reaches one.

        Whatever is raised on the way is the plugin's: importing it, reading its
        attributes for receivers (a ``LocalProxy``, a module ``__dir__`` or a property
        that raises), registering it with pluggy, connecting, or a
        ``tocsin_plugin_enabled`` hook.  Everything it made is dropped again, it is
        blocked in pluggy, disabled, its error is kept on ``PluginInfo.error`` and
        :class:`PluginLoadError` is raised.  A BaseException that is not an Exception
        (``KeyboardInterrupt``; ``SystemExit`` counts as the plugin's failure) gets the
        same rollback and is then re-raised as it is."""
        if plugin.obj is None and plugin.declarations:
            self._connect_standins(plugin, report)
            plugin.error = None
            plugin.enabled = True
            logger.info(
                "Enabled plugin %r (%d declared receivers, imported on first use).",
                plugin.name,
                len(plugin.standins),
            )
            return
        name = plugin.name
        fresh_import = plugin.obj is None
        inspecting = fresh_import or not plugin.declared
        # Every connection made while importing and inspecting, by anyone: the rollback
        # drops those that are the plugin's, or of modules whose import did not finish.
        made_meanwhile: list[Connection] = []
        package = _package_of(plugin)
        # A module this import brings in, forgotten again if the plugin fails before
        # pluggy has it, so that a later enable() runs its import (its connect() calls)
        # again.  One that was imported already (by another plugin) is left alone.
        module = plugin.entry.module if fresh_import and plugin.entry is not None else None
        if module is not None and module in sys.modules:
            module = None
        registered = False
        what = "failed to import"
        try:
            recorded: list[tuple[Callable[..., Any], list[ReceiverMark]]] = []
            token = declared_receivers.set(recorded)
            try:
                with owned_by(plugin) as ownership:
                    made_meanwhile = ownership.connections
                    if fresh_import:
                        plugin.obj = self._import(plugin)
                    what = "could not be registered"
                    self._refuse_shared_object(plugin)
                    if inspecting:
                        what = "could not be inspected (reading its attributes raised)"
                        plugin.declared = declared_by(plugin.obj, recorded)
            finally:
                declared_receivers.reset(token)
            needs_instance = _needs_instance(plugin)
            if needs_instance is not None:
                what = "is a class where an instance is expected"
                raise TypeError(needs_instance)
            what = "could not be registered"
            if self._pm.is_blocked(name):
                self._pm.unblock(name)
            self._pm.register(plugin.obj, name=name)
            registered = True
            what = "could not be connected"
            plugin.error = None
            self._connect(plugin)
            if fresh_import:
                # What its own package connected while importing (@receiver marks are
                # claimed by _connect already; plain connect() calls are adopted here).
                self._adopt(plugin, [c for c in made_meanwhile if _in_package(c.receiver, package)])
            plugin.enabled = True
            what = "could not be enabled (a tocsin_plugin_enabled hook raised)"
            self._call_enabled_hooks(name)
        except BaseException as error:
            forget = not registered
            if forget and module is not None:
                sys.modules.pop(module, None)
            self._roll_back(
                plugin, made_meanwhile, package, fresh_import and forget, inspecting and forget
            )
            if not isinstance(error, (Exception, SystemExit)):
                plugin.error = error
                raise  # KeyboardInterrupt and the like: rolled back, and on their way
            raise self._failed(plugin, error, what, report, 4) from error
        logger.info("Enabled plugin %r (%d receivers).", name, len(plugin.owned))

    def _import(self, plugin: _Plugin) -> object:
        """Import the plugin's entry point as ``EntryPoint.load()`` does (extras, as in
        ``mod:obj [fast]``, are not the import's business)."""
        entry = plugin.entry
        assert entry is not None
        obj: object = importlib.import_module(entry.module)
        for part in (entry.attribute or "").split("."):
            if part:
                obj = getattr(obj, part)
        return obj

    def _refuse_shared_object(self, plugin: _Plugin) -> None:
        """One object is one plugin: pluggy registers an object once, and two plugins
        owning the same receivers could not be disabled one without the other.  A
        second name for an object another plugin holds (two entry points naming one
        module) is refused, and the first is left as it is."""
        obj = plugin.obj
        for other in self._plugins.values():
            if other is not plugin and other.obj is obj:
                where = f" (entry point {other.entry.value!r})" if other.entry else ""
                raise ValueError(
                    f"{_describe(obj)} is plugin {other.name!r}{where} already; one object "
                    f"is one plugin. Remove one of the two entry points, or point this "
                    f"one at another object"
                )

    def _roll_back(
        self,
        plugin: _Plugin,
        made_meanwhile: list[Connection],
        package: str,
        fresh_import: bool,
        inspected: bool,
    ) -> None:
        """Undo a failed enable: the plugin's connections (owned, hooked, made while it
        imported) and its pluggy registration.  An object that never got as far as
        pluggy is forgotten (*fresh_import*: the object; *inspected*: what it
        declares); one that did is kept, so that enable() puts back exactly what its
        import made."""
        self._release(plugin)
        # Those of other packages that finished importing stay: their import will not
        # run again to make them.
        for connection in made_meanwhile:
            if not _survives(connection, package):
                connection.drop()
        plugin.enabled = False
        self._pm.set_blocked(plugin.name)  # unregisters it from pluggy, if it was
        if fresh_import:
            plugin.obj = None
        if inspected:
            plugin.declared = []
            plugin.dropped = {}

    def _failed(
        self, plugin: _Plugin, error: BaseException, what: str, report: bool, depth: int = 5
    ) -> PluginLoadError:
        """Record a failure and make its error; *report* it (once, as a warning) unless
        the caller raises it instead.  (*depth* is no longer used: the warning points at
        the first caller outside tocsin.)

        The warning is the one channel that shows by default: the log record under
        ``tocsin.plugins`` (with the traceback) is at DEBUG, so that logging's
        last-resort handler does not print the failure a second time."""
        plugin.error = error
        origin = f" from {plugin.entry.distribution}" if plugin.entry else ""
        location = failure_location(error, _packages_of(plugin))
        at = f" (at {location[0]}:{location[1]})" if location else ""
        head = f"Plugin {plugin.name!r}{origin} {what}: {public_name(type(error))}: {error}{at}."
        if self._strict_source is not None:
            tail = (
                f" load() raises this because strict mode is on ({self._strict_source}); "
                f"the plugins that did load stay loaded. Fix or uninstall it, or list it "
                f"in TOCSIN_DISABLED_PLUGINS to start without it."
            )
        elif plugin.entry is None and not plugin.declarations:
            tail = " Nothing of it is connected."  # registered by hand: register() raises
        else:
            tail = (
                " It is disabled, and the other plugins carry on. Fix or uninstall it, or "
                "list it in TOCSIN_DISABLED_PLUGINS to stop loading it."
            )
        message = head + tail
        if report:
            logger.debug("%s", message, exc_info=error)
            _warn(message)
        return PluginLoadError(message, plugin.name)

    def _connect(self, plugin: _Plugin) -> None:
        """Connect (or claim the import-time connections of) every declared receiver."""
        dropped, plugin.dropped = plugin.dropped, {}
        for index, (func, mark) in enumerate(plugin.declared):
            connection = mark.signal.registry.find(func, mark.sender, mark.dispatch_uid)
            if connection is not None and _other_plugin(connection.owner, plugin):
                # Another plugin's (a receiver its module imported from this one's): it
                # stays that plugin's, to drop and restore, never this one's.
                continue
            previous = dropped.get(index)
            if connection is None and previous is not None and previous.reinstate():
                connection = previous  # back in its place in the dispatch order
            if connection is None:
                connection = mark.signal.registry.connect(
                    func, mark.sender, mark.weak, mark.dispatch_uid, mark.priority, owner=plugin
                )
            if connection is not None:
                plugin.owned[index] = connection
            elif mark.dispatch_uid is not None:
                logger.warning(
                    "Plugin %r: receiver %s was not connected to %r, because dispatch_uid "
                    "%r is already taken.",
                    plugin.name,
                    getattr(func, "__qualname__", func),
                    mark.signal,
                    mark.dispatch_uid,
                )

    def _connect_standins(self, plugin: _Plugin, report: bool) -> None:
        """Connect a stand-in for each declared receiver (importing the signals and the
        senders given by path, which are not the plugin's code)."""
        try:
            for declaration in plugin.declarations:
                signal = resolve_path(declaration.signal)
                if not isinstance(signal, Signal):
                    raise TypeError(
                        f"{declaration.signal} is a {type(signal).__name__}, not a tocsin Signal"
                    )
                sender = declaration.sender
                if declaration.sender_is_path:
                    assert isinstance(sender, str)
                    sender = resolve_path(sender)
                standin = DeclaredReceiver(declaration, self._materialize)
                connection = signal.registry.connect(
                    standin,
                    sender,
                    False,
                    declaration.dispatch_uid,
                    declaration.priority,
                    owner=plugin,
                )
                if connection is not None:
                    plugin.standins.append(connection)
        except BaseException as error:
            self._release(plugin)
            self._pm.set_blocked(plugin.name)
            if not isinstance(error, (Exception, SystemExit)):
                plugin.error = error
                raise
            what = "declares a receiver whose signal or sender cannot be imported"
            raise self._failed(plugin, error, what, report, 4) from error

    def _materialize(self, standin: DeclaredReceiver) -> Callable[..., Any] | None:
        """A stand-in was reached by a send: import its plugin (the first time), put
        the real receivers in the stand-ins' places, and return the one asked for.

        None if the plugin was disabled meanwhile.  If the import fails, the plugin is
        disabled (its stand-ins go, so it is not tried again), its error is kept and
        reported, and :class:`PluginLoadError` is raised to the send."""
        declaration = standin.declaration
        with self._lock:
            plugin = self._plugins.get(declaration.plugin)
            if plugin is None or not plugin.enabled:
                return None
            if declaration not in plugin.resolved:
                self._import_declared(plugin)
            return plugin.resolved.get(declaration)

    def _import_declared(self, plugin: _Plugin) -> None:
        package_of = {d.module.partition(".")[0] for d in plugin.declarations}
        if plugin.entry is not None:
            package_of.add(plugin.entry.module.partition(".")[0])
        recorded: list[tuple[Callable[..., Any], list[ReceiverMark]]] = []
        token = declared_receivers.set(recorded)
        resolved: dict[Declaration, Callable[..., Any]] = {}
        try:
            with owned_by(plugin) as ownership:
                obj: object = None
                entry = plugin.entry
                if entry is not None:
                    obj = importlib.import_module(entry.module)
                    if entry.attribute:
                        obj = resolve_path(f"{entry.module}:{entry.attribute}")
                for declaration in plugin.declarations:
                    resolved[declaration] = resolve_path(declaration.receiver)
                if obj is None:
                    obj = sys.modules[plugin.declarations[0].module]
            self._pm.register(obj, name=plugin.name)
        except BaseException as error:
            for connection in ownership.connections:
                if not any(_in_package(connection.receiver, p) for p in package_of):
                    continue
                connection.drop()
            self._release(plugin)
            plugin.enabled = False
            self._pm.set_blocked(plugin.name)
            if not isinstance(error, (Exception, SystemExit)):
                raise
            what = "failed to import on its first use (a send reached its receiver)"
            raise self._failed(plugin, error, what, True, 6) from error
        finally:
            declared_receivers.reset(token)
        plugin.obj = obj
        plugin.resolved = resolved
        standins, plugin.standins = plugin.standins, []
        for connection in standins:
            standin = connection.receiver
            if not isinstance(standin, DeclaredReceiver):
                continue
            declaration = standin.declaration
            real = resolved[declaration]
            new = connection.registry.swap(connection, real, weak=True)
            signal = connection.registry.signal
            assert isinstance(signal, Signal)
            mark = ReceiverMark(
                signal, connection.sender, True, declaration.dispatch_uid, declaration.priority
            )
            if new is not None:
                plugin.owned[len(plugin.declared)] = new
            plugin.declared.append((real, mark))
        made = [
            c for c in ownership.connections if any(_in_package(c.receiver, p) for p in package_of)
        ]
        self._adopt(plugin, made)
        logger.info("Imported plugin %r on first use.", plugin.name)
        try:
            self._call_enabled_hooks(plugin.name)
        except BaseException as error:
            self._release(plugin)
            plugin.enabled = False
            self._pm.set_blocked(plugin.name)
            if not isinstance(error, (Exception, SystemExit)):
                plugin.error = error
                raise
            what = "could not be enabled on its first use (a tocsin_plugin_enabled hook raised)"
            raise self._failed(plugin, error, what, True, 6) from error

    def _adopt(self, plugin: _Plugin, made: list[Connection]) -> None:
        """Own the connections the import made with ``connect()`` (those of
        ``@receiver`` are owned already): declared like marked receivers, so that
        disable and enable move exactly them, with their options."""
        owned = {id(c) for c in plugin.owned.values()}
        for connection in made:
            receiver = connection.receiver
            if id(connection) in owned or receiver is None or not connection.alive():
                continue
            signal = connection.registry.signal
            assert isinstance(signal, Signal)
            mark = ReceiverMark(
                signal,
                connection.sender,
                connection.weak,
                connection.dispatch_uid,
                connection.priority,
            )
            plugin.owned[len(plugin.declared)] = connection
            plugin.declared.append((receiver, mark))

    def _call_enabled_hooks(self, name: str) -> None:
        """Call every plugin's ``tocsin_plugin_enabled(manager, name)``, each as the
        owner of the connections it makes (dropped when that plugin is disabled)."""
        caller = self._pm.hook.tocsin_plugin_enabled
        impls = caller.get_hookimpls()
        if any(impl.hookwrapper or impl.wrapper for impl in impls):
            caller(manager=self, name=name)  # wrappers: pluggy's own call, unattributed
            return
        arguments = {"manager": self, "name": name}
        for impl in reversed(impls):  # pluggy's call order: the last registered first
            owner = self._plugins.get(impl.plugin_name)
            with owned_by(owner) as ownership:
                try:
                    impl.function(**{k: arguments[k] for k in impl.argnames})
                finally:
                    if owner is not None:
                        owner.hooked += ownership.connections

    def _release(self, plugin: _Plugin) -> None:
        for connection in [*plugin.owned.values(), *plugin.hooked, *plugin.standins]:
            connection.drop()
        plugin.dropped = dict(plugin.owned)
        plugin.owned.clear()
        plugin.hooked.clear()
        plugin.standins.clear()

    def _disable(self, plugin: _Plugin) -> None:
        try:
            self._pm.hook.tocsin_plugin_disabled(manager=self, name=plugin.name)
        except Exception:
            # Disabling must not be vetoed by a failing clean-up: report it, go on.
            logger.error(
                "A tocsin_plugin_disabled hook raised while disabling plugin %r; it is "
                "disabled all the same.",
                plugin.name,
                exc_info=True,
            )
        self._release(plugin)
        plugin.enabled = False
        self._pm.set_blocked(plugin.name)
        logger.info("Disabled plugin %r.", plugin.name)

    # -- reporting --------------------------------------------------------------------

    def _warn_once(self, key: tuple[str, ...], message: str) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        logger.debug("%s", message)  # the warning is what shows; see _failed()
        _warn(message)

    def _report_clashes(self, found: Discovery) -> None:
        for kept, ignored in found.clashes:
            self._warn_once(
                ("clash", kept.name, kept.distribution, ignored.distribution),
                f"Plugin name {kept.name!r} is declared by two distributions: "
                f"{kept.distribution} {kept.version} ({kept.location}) and "
                f"{ignored.distribution} {ignored.version} ({ignored.location}). "
                f"Using {kept.distribution}, the first on sys.path; uninstall one of them "
                f"or rename its entry point.",
            )

    def _report_unknown_names(self, settings: PluginSettings) -> None:
        for name, source in settings.named_plugins():
            if name not in self._plugins and name not in self._forgotten:
                known = ", ".join(sorted(self._plugins)) or "none"
                self._warn_once(
                    ("unknown", name, source),
                    f"{source} names plugin {name!r}, which is not installed in group "
                    f"{self.group!r}. Known plugins: {known}.",
                )


def plugin_imports(manager: PluginManager) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """What importing each plugin ``manager.load()`` would enable now imports, in name
    order: (plugin, [(module, attribute or None), ...]).  Its entry point's module and
    object; for a plugin whose receivers are only declared in metadata, the modules
    that define them.  Nothing is imported (``tocsin._import_times`` does that)."""
    settings = manager.settings()
    found = discover(manager.group, use_cache=manager._use_cache)
    targets: dict[str, list[tuple[str, str | None]]] = {}
    for entry in found.entries:
        targets[entry.name] = [(entry.module, entry.attribute)]
    declarations, _ = _read_declarations(found.declared)
    for name, declared in declarations.items():
        if name not in targets:
            modules = dict.fromkeys(declaration.module for declaration, _ in declared)
            targets[name] = [(module, None) for module in modules]
    return [(name, targets[name]) for name in sorted(targets) if settings.wants(name)]


def _warn(message: str) -> None:
    """Issue a :class:`TocsinPluginWarning` pointing at the first frame outside tocsin
    (the application's call of ``load()``, ``enable()`` or the send)."""
    import warnings

    level = 2
    frame = sys._getframe(1)
    while frame.f_back is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "tocsin" and not module.startswith("tocsin."):
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, TocsinPluginWarning, stacklevel=level)


def public_name(kind: type) -> str:
    """How to write an exception class where users import it from: ``RuntimeError``,
    ``tocsin.PluginLoadError`` (its ``__module__`` says so), ``pluggy.PluginValidationError``
    (the shortest package that exports it), else ``module.Qualname``."""
    module, qualname = kind.__module__, kind.__qualname__
    if module == "builtins":
        return qualname
    parts = module.split(".")
    for depth in range(1, len(parts)):
        package = sys.modules.get(".".join(parts[:depth]))
        if package is not None and getattr(package, qualname, None) is kind:
            return f"{package.__name__}.{qualname}"
    return f"{module}.{qualname}"


def failure_location(error: BaseException, packages: Iterable[str]) -> tuple[str, int] | None:
    """Where in the plugin's own code *error* happened: (file, line) of the last
    traceback frame in one of *packages* (a :class:`SyntaxError`: the line it points
    at), or None if the failure is outside them (a module that is not installed)."""
    roots = tuple(packages)

    def ours(module: object) -> bool:
        return isinstance(module, str) and any(
            module == root or module.startswith(root + ".") for root in roots
        )

    found: tuple[str, int] | None = None
    import traceback

    for frame, line in traceback.walk_tb(error.__traceback__):
        if ours(frame.f_globals.get("__name__")):
            found = (frame.f_code.co_filename, line)
    if isinstance(error, SyntaxError) and error.filename and error.lineno:
        found = (error.filename, error.lineno)
    return found


def _needs_instance(plugin: _Plugin) -> str | None:
    """What is wrong with a plugin object that is a class whose ``@receiver`` methods
    need an instance (registering the class would connect functions without a
    ``self``), or None.  A class whose receivers are static or class methods is fine."""
    cls = plugin.obj
    if not isinstance(cls, type):
        return None
    seen: set[str] = set()
    methods: list[str] = []
    for klass in cls.__mro__:
        for attribute, raw in vars(klass).items():
            if attribute in seen:
                continue
            seen.add(attribute)
            if isinstance(raw, types.FunctionType) and raw.__dict__.get("__tocsin_receivers__"):
                methods.append(attribute)
    if not methods:
        return None
    listed = ", ".join(sorted(methods))
    entry = plugin.entry
    if entry is None:
        return (
            f"{cls.__qualname__} is a class, and its receivers ({listed}) are methods, which "
            f"need an instance: registering the class connects none of them. Register an "
            f"instance instead, e.g. register({cls.__qualname__}())"
        )
    return (
        f"{entry.value} is a class, and its receivers ({listed}) are methods, which need "
        f"an instance: registering the class connects none of them. Point the entry point "
        f'at an instance instead, e.g. {plugin.name} = "{entry.module}:plugin" with '
        f"plugin = {cls.__qualname__}() in {entry.module}"
    )


def _packages_of(plugin: _Plugin) -> list[str]:
    """The top-level packages of a plugin's code: its entry point's and its declared
    receivers' (a plugin registered by hand: its object's module)."""
    modules = [d.module for d in plugin.declarations]
    obj = plugin.obj
    if plugin.entry is not None:
        modules.append(plugin.entry.module)
    elif isinstance(obj, types.ModuleType):
        modules.append(obj.__name__)
    elif obj is not None:
        modules.append(getattr(obj if isinstance(obj, type) else type(obj), "__module__", ""))
    return sorted({m.partition(".")[0] for m in modules if m})


class _SharedPolicy(Protocol):
    """What the manager asks a shared state (see :class:`tocsin.state.SharedState`)."""

    def wants(self, name: str, settings: PluginSettings) -> bool: ...


def _names_argument(names: Iterable[str] | None) -> Any:
    """Keep a list argument (consuming an iterator once); pass anything else through, for
    resolve_settings() to report (``list("alpha")`` would silently name five plugins)."""
    if names is None or isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        return names
    return list(names)


def _other_plugin(owner: object, plugin: _Plugin) -> bool:
    return isinstance(owner, _Plugin) and owner is not plugin


def _package_of(plugin: _Plugin) -> str:
    """The top-level package whose connections are the plugin's own: its entry point's
    module's, else (registered by hand) its module's or its class's."""
    if plugin.entry is not None:
        module = plugin.entry.module
    elif issubclass(type(plugin.obj), types.ModuleType):
        try:
            module = str(getattr(plugin.obj, "__name__", ""))
        except Exception:  # a module of its own making: its import says the rest
            module = ""
    else:
        module = type(plugin.obj).__module__
    return module.partition(".")[0]


def _describe(obj: object) -> str:
    """A plugin object in an error message (without asking the object anything)."""
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__!r}"
    kind = type(obj)
    return f"the {kind.__module__}.{kind.__qualname__} object at {id(obj):#x}"


def _in_package(receiver: object, package: str) -> bool:
    module = getattr(receiver, "__module__", None) or ""
    return module == package or module.startswith(package + ".")


def _survives(connection: Connection, package: str) -> bool:
    """Whether a connection a failed plugin import made stays: one of another package
    that finished importing.  The plugin's own, and those of modules the failed import
    rolled back, go."""
    receiver = connection.receiver
    module = getattr(receiver, "__module__", None) or ""
    return not _in_package(receiver, package) and module in sys.modules


def _read_declarations(
    entries: Iterable[PluginEntry],
) -> tuple[dict[str, list[tuple[Declaration, PluginEntry]]], dict[str, list[str]]]:
    """The declarations of each plugin, and the unreadable ones (plugin -> messages)."""
    found: dict[str, list[tuple[Declaration, PluginEntry]]] = {}
    unreadable: dict[str, list[str]] = {}
    for entry in entries:
        try:
            declaration = parse_declaration(entry.name, entry.value)
        except DeclarationError as error:
            name = entry.name.split()[0] if entry.name.split() else entry.name
            unreadable.setdefault(name, []).append(f"{error} (in {entry.distribution})")
        else:
            found.setdefault(declaration.plugin, []).append((declaration, entry))
    return found, unreadable
