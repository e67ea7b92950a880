"""The ``tocsin`` command: what is installed, what listens to what, and what is wrong.

Usage:

    tocsin [--group G] [--import MODULE ...] plugins [--json]
    tocsin [--group G] [--import MODULE ...] signals [--json]
    tocsin [--group G] [--import MODULE ...] doctor  [--json]
    tocsin relay --database URL --app MODULE:ATTR [--once] [--interval S] [--batch N]
    tocsin --version

``--group`` inspects another entry-point group than ``tocsin.plugins``; ``--import``
imports a module of the application first (repeatable; the working folder is on the
module path), as the application would before loading plugins.

``tocsin plugins`` lists each plugin: distribution, version, enabled, loaded,
receivers, error; a plugin that failed is shown with the file and line where it failed
(the last traceback frame in the plugin's own package).  Exit status 1 if any plugin
is broken.

``tocsin signals`` lists each known signal with its arguments and its receivers, in the
order a send calls them, each with its sender filter, ``dispatch_uid``, priority and
plugin.  The known signals are the catalogue (:mod:`tocsin.signals`), those plugins
list through the ``tocsin_signals`` hook, those any plugin receiver (imported or
declared) is connected to, every signal that is a module-level or class-level
attribute of a module imported at that point (the application's modules its plugins
import, and those named with ``--import``), and any other live signal that has
receivers.  An unnamed signal is shown by its import path.

``tocsin doctor`` prints every problem it finds, one a line, and exits with status 1
if there is any.  It loads like ``load(verify=True)``.  The problems, by their
``problem`` name in ``--json``:

    ========================== ===============================================================
    problem                    what is wrong
    ========================== ===============================================================
    configuration-error        a setting tocsin cannot use (a TOCSIN_* variable, [tool.tocsin]
                               in pyproject.toml); no plugin is loaded
    import-error               a module given with --import cannot be imported
    broken-plugin              a plugin failed to load (with the file and line)
    duplicate-name             two distributions declare one plugin name
    dispatch-uid-conflict      a plugin's receiver is not connected: its dispatch_uid is taken
    receiver-arguments         a receiver requires arguments its signal does not send
    unknown-plugin-name        a setting names a plugin that is not installed
    entry-point-group          a distribution declares entry points in a group close to the
                               plugin group or its receivers group (tocsin_plugins,
                               tocsin.plugin, tocsin.receivers...), which tocsin does not read
    unreadable-declaration     a receiver declared in metadata cannot be read
    unresolved-declaration     a declared receiver, signal or sender path does not resolve
                               (checked for every plugin, without importing plugin code)
    plugin-index               the entry-point index cannot be used (every start scans)
    ========================== ===============================================================

``tocsin relay`` publishes the pending rows of the deferred receivers' outbox
(``tocsin_outbox``, see :mod:`tocsin.contrib.celery.outbox`) in the database at URL,
with the Celery app MODULE:ATTR, until interrupted (``--once``: one pass, printing how
many it published).

Every command reports a configuration error (exit status 1) rather than failing with a
traceback.  ``--json`` prints plain JSON values: a ``dispatch_uid`` or sender that is
a str, int, float, bool or None as itself, a tuple as a list, a class or function as
its import path (``module:qualname``), anything else as its ``str()``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from typing import Any

from tocsin._errors import PluginConfigError, TocsinPluginWarning
from tocsin._manager import DEFAULT_GROUP, PluginManager, failure_location, public_name
from tocsin._refs import describe, receiver_identity
from tocsin._signal import Signal

__all__ = ["main"]


@dataclass
class _Known:
    """A signal the commands show, and the import path it was found at (if any)."""

    signal: Signal
    path: str | None

    @property
    def label(self) -> str:
        return self.signal.name or self.path or repr(self.signal)


@dataclass
class _Report:
    """What loading the plugins showed, gathered once for every command."""

    manager: PluginManager
    warnings: list[str] = field(default_factory=list)
    owners: dict[tuple[int, Hashable], str] = field(default_factory=dict)
    signals: list[_Known] = field(default_factory=list)
    #: Problems that stopped the plugins from loading, or the application's modules
    #: from importing: every command shows them and exits 1.
    errors: list[dict[str, Any]] = field(default_factory=list)


def _gather(manager: PluginManager, imports: Sequence[str], *, verify: bool) -> _Report:
    report = _Report(manager)
    # A plugin (or the application) that prints must not spoil --json on stdout.
    with redirect_stdout(sys.stderr):
        for module in imports:
            try:
                __import__(module)
            except Exception as error:
                report.errors.append(
                    {
                        "problem": "import-error",
                        "message": f"cannot import {module!r} (given with --import): "
                        f"{public_name(type(error))}: {error}",
                        "module": module,
                    }
                )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TocsinPluginWarning)
            try:
                manager.load(strict=False, verify=verify)
            except PluginConfigError as error:
                report.errors.append({"problem": "configuration-error", "message": str(error)})
    broken = [f"Plugin {name!r}" for name in manager if manager[name].error is not None]
    report.warnings = [
        str(w.message)
        for w in caught
        # A broken plugin is shown by the commands themselves: not twice.
        if not str(w.message).startswith(tuple(broken) or ("\0",))
    ]
    known: dict[int, _Known] = {}
    from tocsin import signals as catalogue

    for name in catalogue.__all__:
        signal = getattr(catalogue, name)
        known[id(signal)] = _Known(signal, f"tocsin.signals:{name}")
    try:
        contributed_lists = manager.hook.tocsin_signals()
    except Exception as error:
        report.warnings.append(
            f"A plugin's tocsin_signals hook raised {public_name(type(error))}: {error}"
        )
        contributed_lists = []
    for contributed in contributed_lists:
        for signal in contributed or ():
            if isinstance(signal, Signal):
                known.setdefault(id(signal), _Known(signal, None))
    for plugin_name in manager:
        for owned in manager[plugin_name].receivers:
            known.setdefault(id(owned.signal), _Known(owned.signal, None))
            if owned.connected:
                key = (id(owned.signal), receiver_identity(owned.receiver))
                report.owners[key] = plugin_name
    for signal, path in _imported_signals():
        entry = known.setdefault(id(signal), _Known(signal, path))
        if entry.path is None:
            entry.path = path
    for signal in _other_live_signals(known):
        known[id(signal)] = _Known(signal, None)
    report.signals = sorted(known.values(), key=lambda k: k.label)
    return report


def _imported_signals() -> list[tuple[Signal, str]]:
    """Every signal that is an attribute of an imported module, or of a class defined
    in one, with its import path (the deepest module's, where it is found twice)."""
    found: dict[int, tuple[Signal, str]] = {}
    for name, module in sorted(sys.modules.items(), key=lambda item: -item[0].count(".")):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attribute, value in list(namespace.items()):
            # type(), not isinstance(): isinstance() asks an object for __class__, which
            # a lazy proxy (Django's settings) answers by setting itself up.
            kind = type(value)
            if issubclass(kind, Signal):
                found.setdefault(id(value), (value, f"{name}:{attribute}"))
            elif issubclass(kind, type) and getattr(value, "__module__", None) == name:
                for inner, member in list(vars(value).items()):
                    if issubclass(type(member), Signal):
                        path = f"{name}:{value.__qualname__}.{inner}"
                        found.setdefault(id(member), (member, path))
    return list(found.values())


def _other_live_signals(known: dict[int, _Known]) -> list[Signal]:
    """Live signals with receivers that no module names (made in a function, say)."""
    import gc

    return [
        obj
        for obj in gc.get_objects()
        if issubclass(type(obj), Signal) and id(obj) not in known and obj.receivers
    ]


def _owner(report: _Report, signal: Signal, receiver: Callable[..., Any]) -> str | None:
    return report.owners.get((id(signal), receiver_identity(receiver)))


# -- values, for people and for JSON -----------------------------------------------------


def _path(value: object) -> str | None:
    """``module:qualname`` of a class or function, else None."""
    if isinstance(value, type) or callable(value):
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", None)
        if isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname:
            return f"{module}:{qualname}"
    return None


def _plain(value: Any) -> Any:
    """A JSON value for *value* (see the module documentation)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return _path(value) or str(value)


def _shown(value: Any) -> str:
    """*value* for a person: an import path for a class or function, else its repr."""
    return _path(value) or repr(value)


def _where(info: Any) -> tuple[str, int] | None:
    """Where a broken plugin failed, in its own code: (file, line), or None."""
    if info.error is None:
        return None
    modules = [info.entry_point or ""]
    for owned in info.receivers:  # declared receivers' stand-ins name their module
        declaration = getattr(owned.receiver, "declaration", None)
        if declaration is not None:
            modules.append(declaration.receiver)
    packages = {m.partition(":")[0].partition(".")[0] for m in modules if m}
    return failure_location(info.error, sorted(packages))


def _shorten(text: str, width: int) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def _error_text(error: BaseException) -> str:
    return f"{public_name(type(error))}: {error}"


# -- commands -------------------------------------------------------------------------


@dataclass
class _Result:
    data: Any
    lines: list[str]
    failed: bool


def _plugins(report: _Report) -> _Result:
    rows: list[dict[str, Any]] = []
    cells: list[list[str]] = []
    details: list[str] = []
    for name in report.manager:
        info = report.manager[name]
        error = None if info.error is None else _error_text(info.error)
        where = _where(info)
        connected = sum(r.connected for r in info.receivers)
        rows.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "enabled": info.enabled,
                "loaded": info.loaded,
                "error": error,
                "where": None if where is None else {"file": where[0], "line": where[1]},
                "receivers": connected,
            }
        )
        by_hand = info.loaded and info.entry_point is None
        cells.append(
            [
                info.name,
                info.distribution or ("(registered by hand)" if by_hand else ""),
                info.version or "",
                "yes" if info.enabled else "no",
                "yes" if info.loaded else "no",
                str(connected),
                _shorten(error or "", 60),  # in full below the table
            ]
        )
        if error is not None:
            details.append(f"{name}: {error}")
            if where is not None:
                details.append(f"    at {where[0]}:{where[1]}")
    header = ["plugin", "distribution", "version", "enabled", "loaded", "receivers", "error"]
    shared = _shared_switches(report.manager)
    if shared is not None:
        # With a shared plugin state (issue 17): its switch, and a local override.
        header.insert(4, "shared")
        for row, cell in zip(rows, cells, strict=True):
            switch, override = shared.get(row["name"], (None, False))
            row["shared"] = switch
            row["local_override"] = override
            text = {None: "-", True: "on", False: "off"}[switch] + (
                " (local override)" if override else ""
            )
            cell.insert(4, text)
    lines = _table(header, cells)
    if not rows:
        # (Nothing loaded because of a configuration error is not "nothing installed".)
        lines = (
            [] if report.errors else [f"No plugins installed in group {report.manager.group!r}."]
        )
    if details:
        lines += ["", "broken plugins:", *(f"  {line}" for line in details)]
    return _Result(rows, lines, any(row["error"] for row in rows))


def _signals(report: _Report) -> _Result:
    rows = []
    lines: list[str] = []
    for known in report.signals:
        signal = known.signal
        connections = sorted(
            signal.registry.live_connections(), key=lambda c: (c.is_async, -c.priority, c.order)
        )
        arguments = list(signal.providing_args)
        lines.append(f"{known.label}({', '.join(arguments)})")
        receivers = []
        for connection in connections:
            receiver = connection.receiver
            if receiver is None:
                continue
            owner = _owner(report, signal, receiver)
            sender, uid = connection.sender, connection.dispatch_uid
            receivers.append(
                {
                    "receiver": describe(receiver),
                    "plugin": owner,
                    "sender": _plain(sender),
                    "dispatch_uid": _plain(uid),
                    "priority": connection.priority,
                    "async": connection.is_async,
                }
            )
            parts = [f"    -> {describe(receiver)}"]
            if owner:
                parts.append(f"[plugin {owner}]")
            if sender is not None:
                parts.append(f"sender={_shown(sender)}")
            if uid is not None:
                parts.append(f"dispatch_uid={uid!r}")
            if connection.priority:
                parts.append(f"priority={connection.priority}")
            if connection.is_async:
                parts.append("async")
            lines.append("  ".join(parts))
        if not receivers:
            lines.append("    (no receivers)")
        rows.append(
            {
                "signal": known.label,
                "path": known.path,
                "arguments": arguments,
                "receivers": receivers,
            }
        )
    return _Result(rows, lines, False)


def _doctor(report: _Report) -> _Result:
    problems: list[dict[str, Any]] = list(report.errors)

    def problem(kind: str, message: str, **details: Any) -> None:
        problems.append({"problem": kind, "message": message, **details})

    manager = report.manager
    declared = _check_declarations(manager, problem)
    if manager.shared_state is not None:
        from tocsin.state import read_shared_state

        shared = read_shared_state(manager)
        if not shared.reachable:
            problem(
                "shared-state-unreachable",
                f"the shared plugin state at {shared.backend} cannot be reached "
                f"({shared.error}); processes keep their last known switches",
            )
    for name in manager:
        info = manager[name]
        if info.error is None:
            continue
        if name in declared and not info.loaded:
            continue  # its declarations' problems are reported: they are why it failed
        where = _where(info)
        at = f" (at {where[0]}:{where[1]})" if where else ""
        problem(
            "broken-plugin",
            f"plugin {name!r} ({info.distribution}) failed: {_error_text(info.error)}{at}",
            plugin=name,
            error=_error_text(info.error),
            where=None if where is None else {"file": where[0], "line": where[1]},
        )
    found = manager.last_discovery
    for kept, ignored in found.clashes if found else ():
        problem(
            "duplicate-name",
            f"plugin name {kept.name!r} is declared by {kept.distribution} and by "
            f"{ignored.distribution}; {kept.distribution} is used",
            plugin=kept.name,
            distributions=[kept.distribution, ignored.distribution],
        )
    for name in manager:
        info = manager[name]
        if not info.enabled:
            continue
        for owned in info.receivers:
            if owned.connected or owned.dispatch_uid is None:
                continue
            holder = _uid_holder(report, owned.signal, owned.dispatch_uid)
            problem(
                "dispatch-uid-conflict",
                f"plugin {name!r}: {describe(owned.receiver)} is not connected to "
                f"{owned.signal.name}, because dispatch_uid {owned.dispatch_uid!r} is "
                f"already held{holder}",
                plugin=name,
                signal=owned.signal.name,
                dispatch_uid=_plain(owned.dispatch_uid),
            )
    for known in report.signals:
        signal = known.signal
        if not signal.providing_args:
            continue
        for receiver in signal.receivers:
            unknown = _unexpected_parameters(receiver, signal.providing_args)
            if unknown:
                owner = _owner(report, signal, receiver)
                problem(
                    "receiver-arguments",
                    f"{describe(receiver)}{f' (plugin {owner})' if owner else ''} requires "
                    f"{', '.join(unknown)}, which {known.label} does not provide "
                    f"(it provides {', '.join(signal.providing_args)})",
                    signal=known.label,
                    receiver=describe(receiver),
                    parameters=unknown,
                )
    if not any(e["problem"] == "configuration-error" for e in report.errors):
        settings = manager.settings()
        for name, source in settings.named_plugins():
            if name not in manager:
                problem(
                    "unknown-plugin-name",
                    f"{source} names plugin {name!r}, which is not installed",
                    plugin=name,
                    source=source,
                )
    for misplaced in _near_miss_groups(manager.group):
        problem("entry-point-group", misplaced.pop("message"), **misplaced)
    from tocsin._discovery import cache_problems

    said = {e["message"] for e in report.errors}
    for reason in cache_problems(manager.group):
        if reason not in said:  # a bad TOCSIN_CACHE_DIR is a configuration error already
            problem("plugin-index", reason)
    lines = [f"{p['problem']}: {p['message']}" for p in problems]
    if not problems:
        lines = [f"No problems found ({len(manager)} plugins, {len(report.signals)} signals)."]
    return _Result(problems, lines, bool(problems))


def _uid_holder(report: _Report, signal: Signal, dispatch_uid: Hashable) -> str:
    for plugin_name in report.manager:
        for owned in report.manager[plugin_name].receivers:
            if owned.signal is signal and owned.connected and owned.dispatch_uid == dispatch_uid:
                return f" by {describe(owned.receiver)} (plugin {plugin_name})"
    return " by a receiver outside the plugins"


def _unexpected_parameters(receiver: Callable[..., Any], provided: Sequence[str]) -> list[str]:
    """Named parameters without a default that the signal's arguments do not supply."""
    import inspect

    try:
        parameters = inspect.signature(receiver).parameters.values()
    except (TypeError, ValueError):
        return []
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        p.name
        for p in parameters
        if p.kind in named
        and p.default is inspect.Parameter.empty
        and p.name not in ("sender", "signal")
        and p.name not in provided
    ]


# -- doctor: receivers declared in metadata -------------------------------------------------


def _check_declarations(manager: PluginManager, problem: Callable[..., None]) -> set[str]:
    """Check every receiver declared in the group's metadata, enabled or not, without
    importing plugin code; report what is wrong, and return the plugins concerned."""
    from tocsin._declared import DeclarationError, parse_declaration, problems
    from tocsin._discovery import discover

    found = manager.last_discovery
    if found is None:  # load() did not get as far as discovery (a configuration error)
        try:
            found = discover(manager.group, use_cache=False)
        except PluginConfigError:
            return set()
    concerned: set[str] = set()
    for entry in found.declared:
        try:
            declaration = parse_declaration(entry.name, entry.value)
        except DeclarationError as error:
            plugin = entry.name.split()[0] if entry.name.split() else entry.name
            concerned.add(plugin)
            problem(
                "unreadable-declaration",
                f"plugin {plugin!r} ({entry.distribution}): {error}",
                plugin=plugin,
                distribution=entry.distribution,
                declaration=f"{entry.name} = {entry.value}",
            )
            continue
        checks = [("receiver", declaration.receiver), ("signal", declaration.signal)]
        if declaration.sender_is_path:
            checks.append(("sender", str(declaration.sender)))
        for role, path in checks:
            reasons = _path_problems(declaration, path, problems)
            for reason in reasons:
                concerned.add(declaration.plugin)
                problem(
                    "unresolved-declaration",
                    f"plugin {declaration.plugin!r} ({entry.distribution}) declares the "
                    f"{role} {path}: {reason} (declared as: {declaration.source})",
                    plugin=declaration.plugin,
                    distribution=entry.distribution,
                    role=role,
                    path=path,
                    declaration=declaration.source,
                )
    return concerned


def _path_problems(declaration: Any, path: str, check: Callable[[Any], list[str]]) -> list[str]:
    """What is wrong with *path* (``module:qualname``): from the live module if it is
    imported already (the signals are, by load()), else from its source, unimported."""
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module is not None:
        obj: Any = module
        for part in qualname.split("."):
            if not hasattr(obj, part):
                return [f"module {module_name!r} has no attribute {qualname!r}"]
            obj = getattr(obj, part)
        return []
    prefix = f"{declaration.source}: "
    return [
        reason.removeprefix(prefix).rstrip(".")
        for reason in check(declaration._replace(receiver=path))
    ]


# -- doctor: entry points in a group tocsin does not read -------------------------------------


def _normal(group: str) -> str:
    """A group name with case and separators (``.``, ``-``, ``_``, spaces) unified."""
    import re

    return re.sub(r"[-_.\s]+", ".", group.strip().lower())


def _closeness(wrong: str, family: str) -> tuple[float, str | None]:
    """How close *wrong* is to the plugin group *family* or to its receivers group,
    and which of the two it was probably meant to be: (1.0, group) when they differ
    only in case and separators, (0, None) when not close at all."""
    import difflib

    from tocsin._discovery import RECEIVERS_SUFFIX

    targets = {_normal(family): family, _normal(family + RECEIVERS_SUFFIX): family + ".receivers"}
    normal, plugin_group = _normal(wrong), _normal(family)
    if normal in targets:
        return 1.0, targets[normal]
    head, _, last = normal.rpartition(".")
    if head and last in ("receivers", "receiver"):
        # tocsin.receivers, tocsin_plugin.receivers: the receivers of the plugin group.
        similar = difflib.SequenceMatcher(None, head, plugin_group).ratio()
        if head == plugin_group.rpartition(".")[0] or similar >= 0.8:
            return 0.95, family + RECEIVERS_SUFFIX
    best: tuple[float, str | None] = (0.0, None)
    for target, name in targets.items():
        ratio = difflib.SequenceMatcher(None, normal, target).ratio()
        if ratio >= 0.8 and ratio > best[0]:
            best = (ratio, name)
    return best


def _meant(wrong: str, group: str) -> str | None:
    """The group (*group*, or its receivers group) that *wrong* was probably meant to
    be; None if it is closer to tocsin's default group than to *group* (a misspelt
    ``tocsin.plugins`` is not this group's business)."""
    families = [group] if group == DEFAULT_GROUP else [group, DEFAULT_GROUP]
    scored = [_closeness(wrong, family) for family in families]
    best = max(range(len(scored)), key=lambda index: scored[index][0])
    return scored[0][1] if best == 0 else None


def _near_miss_groups(group: str) -> list[dict[str, Any]]:
    """Installed distributions with entry points in a group close to *group* (or to
    its receivers group), which tocsin does not read: most likely a typo."""
    from importlib import metadata

    from tocsin._discovery import RECEIVERS_SUFFIX

    targets = (group, group + RECEIVERS_SUFFIX)
    real = {*targets, DEFAULT_GROUP, DEFAULT_GROUP + RECEIVERS_SUFFIX}
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for distribution in metadata.distributions():
        try:
            name = (distribution.metadata.get_all("Name") or ["?"])[0]  # [] warns if missing
            points = list(distribution.entry_points)
        except Exception:  # metadata that cannot be read: not this check's business
            continue
        groups: dict[str, list[str]] = {}
        for point in points:
            groups.setdefault(point.group, []).append(f"{point.name} = {point.value}")
        for wrong, entries in sorted(groups.items()):
            if wrong in real or (name, wrong) in seen:
                continue
            seen.add((name, wrong))
            meant = _meant(wrong, group)
            if meant is None:
                continue
            found.append(
                {
                    "message": f"distribution {name} declares entry points in group "
                    f"{wrong!r} ({'; '.join(entries)}), which tocsin does not read: did "
                    f"you mean {meant!r}? Rename the table to "
                    f'[project.entry-points."{meant}"] in its pyproject.toml and '
                    f"reinstall it",
                    "distribution": name,
                    "group": wrong,
                    "meant": meant,
                    "entry_points": entries,
                }
            )
    return found


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    body = [header, *rows]
    widths = [max(len(row[i]) for row in body) for i in range(len(header))]
    out = []
    for index, row in enumerate(body):
        out.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return out


_COMMANDS = {"plugins": _plugins, "signals": _signals, "doctor": _doctor}


def main(argv: Sequence[str] | None = None, *, manager: PluginManager | None = None) -> int:
    """Run the command; *manager* lets an application show its own live manager."""
    from tocsin import __version__

    parser = argparse.ArgumentParser(
        prog="tocsin", description="Inspect tocsin plugins and signals."
    )
    parser.add_argument("--version", action="version", version=f"tocsin {__version__}")
    parser.add_argument("--group", default=DEFAULT_GROUP, help="entry-point group of plugins")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (the application's signals; repeatable); the working "
        "folder is on the module path",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, helptext in (
        ("plugins", "list installed plugins and their state; exit 1 if one is broken"),
        ("signals", "list known signals, their arguments and receivers"),
        ("doctor", "check plugins, declarations and receivers; exit 1 if anything is wrong"),
        ("relay", "publish the deferred receivers' outbox (tocsin_outbox) to the broker"),
    ):
        command = commands.add_parser(name, help=helptext)
        if name == "relay":
            _relay_arguments(command)
            continue
        command.add_argument("--json", action="store_true", help="print JSON")
        if name == "plugins":
            command.add_argument(
                "switch",
                nargs="?",
                choices=("enable", "disable", "reset", "history"),
                help="change or show a plugin's switch in the shared plugin state "
                "(TOCSIN_STATE), for every process of the deployment",
            )
            command.add_argument("name", nargs="?", help="the plugin to switch")
            command.add_argument("--reason", default="", help="why, for the audit trail")
        if name == "doctor":
            command.add_argument(
                "--import-times",
                nargs="?",
                const=10.0,
                type=float,
                metavar="SECONDS",
                help="also import each enabled plugin in a fresh interpreter, with a time "
                "limit (default 10 s), and report hanging, failing and slow ones",
            )
    args = parser.parse_args(argv)
    if args.command == "relay":
        return _relay(args)
    if args.command == "plugins" and args.switch is not None:
        return _switch(args, manager)
    if args.imports:
        import os

        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
    # The commands report problems themselves; keep the library's log records (and
    # their tracebacks) from also reaching the terminal through logging's last resort.
    logging.getLogger("tocsin").addHandler(logging.NullHandler())
    times = None
    if manager is None:
        manager = PluginManager(args.group)
        if args.command == "doctor" and args.import_times is not None:
            from tocsin._import_times import import_times

            # Before anything is imported here: a plugin that hangs at import would
            # hang this process too, so those that failed in their own interpreter are
            # left out of this one (as disabled plugins are: listed, never imported).
            times = import_times(timeout=args.import_times, manager=manager)
            failed = {t.plugin for t in times if t.error is not None}
            if failed:
                disabled = set(manager.settings().disabled) | failed
                manager = PluginManager(args.group, disabled=sorted(disabled))
    report = _gather(manager, args.imports, verify=args.command == "doctor")
    result = _COMMANDS[args.command](report)
    if times is not None:
        _add_import_times(result, times)
    errors = [] if args.command == "doctor" else report.errors  # doctor lists them itself
    try:
        _print(args, result, report, errors)
    except BrokenPipeError:  # `tocsin plugins | head`: the reader has had enough
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if result.failed or errors else 0


def _shared_switches(manager: PluginManager) -> dict[str, tuple[bool | None, bool]] | None:
    """Each plugin's switch in the shared plugin state and whether this process
    overrides it; None when no shared state is followed."""
    if manager.shared_state is None:
        return None
    from tocsin.state import read_shared_state

    report = read_shared_state(manager)
    return {
        row.name: (None if row.shared is None else row.shared.enabled, row.override)
        for row in report.plugins
    }


def _relay_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--database", required=True, metavar="URL", help="SQLAlchemy URL")
    command.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTR",
        help="the Celery app to publish with (the working folder is on the module path)",
    )
    command.add_argument("--once", action="store_true", help="one pass, then exit")
    command.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    command.add_argument("--batch", type=int, default=100, help="rows claimed at a time")
    command.add_argument(
        "--keep-published",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep published rows this long (default: the app's "
        "tocsin_outbox_keep_published, else delete them)",
    )


def _relay(args: argparse.Namespace) -> int:
    """``tocsin relay --database URL --app MODULE:ATTR``: drain the outbox, once or
    until interrupted."""
    import os

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    from tocsin.contrib.celery._outbox_common import load_app
    from tocsin.contrib.celery.outbox import relay_once, run_relay

    try:
        app = load_app(args.app)
        engine = create_engine(args.database)
    except (ValueError, SQLAlchemyError) as error:
        print(f"tocsin relay: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    options = {"batch": args.batch, "keep_published": args.keep_published}
    try:
        if args.once:
            published = relay_once(engine, app, **options)
            print(f"published {published}")
        else:
            run_relay(engine, app, interval=args.interval, **options)
    except KeyboardInterrupt:
        pass
    except SQLAlchemyError as error:  # (run_relay logs and goes on; one pass reports)
        print(
            f"tocsin relay: cannot read the outbox in {engine.url!r}: "
            f"{getattr(error, 'orig', None) or error}\nCreate the "
            f"table with create_outbox_table() or the Alembic revision (see the docs).",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    return 0


def _switch(args: argparse.Namespace, manager: PluginManager | None) -> int:
    """``tocsin plugins enable|disable|reset|history [NAME] [--reason R]``: the shared
    plugin state (issue 17), which every process of the deployment follows."""
    from tocsin.state import (
        SharedStateError,
        plugin_history,
        reset_plugin_state,
        set_plugin_state,
    )

    if args.switch != "history" and not args.name:
        print(f"tocsin plugins {args.switch} needs the plugin's name.", file=sys.stderr)
        return 2
    try:
        if args.switch == "history":
            changes = plugin_history(args.name, manager=manager)
            rows: list[dict[str, Any]] = [
                {
                    "plugin": c.name,
                    "enabled": c.enabled,
                    "who": c.changed_by,
                    "reason": c.reason,
                    "at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.changed_at)),
                    "host": c.host,
                    "pid": c.pid,
                }
                for c in changes
            ]
            if args.json:
                print(json.dumps({"history": rows}, indent=2, default=str))
            for row in [] if args.json else rows:
                state = {True: "enabled", False: "disabled", None: "reset"}[row["enabled"]]
                print(f"{row['at']}  {row['plugin']}  {state}  by {row['who']}: {row['reason']}")
            return 0
        if args.switch == "reset":
            reset_plugin_state(args.name, args.reason, manager=manager)
        else:
            set_plugin_state(args.name, args.switch == "enable", args.reason, manager=manager)
    except (SharedStateError, PluginConfigError) as error:
        print(f"shared-state: {error}", file=sys.stderr)
        return 1
    print(f"{args.name}: {args.switch}d in the shared plugin state")
    return 0


#: An import slower than this (seconds) is reported by ``doctor --import-times``.
SLOW_IMPORT = 1.0


def _add_import_times(result: _Result, times: Sequence[Any]) -> None:
    """Add ``doctor --import-times``'s findings to *result* (issue 14): each enabled
    plugin imported in an interpreter of its own, stopped at the time limit."""
    found: list[dict[str, Any]] = []
    for timing in times:
        if timing.error is not None:
            found.append(
                {
                    "problem": "plugin-import-failed",
                    "plugin": timing.plugin,
                    "message": f"importing plugin {timing.plugin!r}: {timing.error}",
                }
            )
        elif timing.seconds is not None and timing.seconds > SLOW_IMPORT:
            found.append(
                {
                    "problem": "slow-plugin-import",
                    "plugin": timing.plugin,
                    "seconds": round(timing.seconds, 3),
                    "message": f"importing plugin {timing.plugin!r} takes "
                    f"{timing.seconds:.1f} s (over {SLOW_IMPORT:.0f} s)",
                }
            )
    if isinstance(result.data, list):
        result.data.extend(found)
    if found:
        if result.lines and result.lines[0].startswith("No problems found"):
            result.lines.clear()
        result.lines.extend(f"{p['problem']}: {p['message']}" for p in found)
        result.failed = True
    timed = ", ".join(
        f"{t.plugin} {t.seconds * 1000:.0f} ms" for t in times if t.seconds is not None
    )
    result.lines.append(f"import times: {timed or 'none measured'}")


def _print(
    args: argparse.Namespace, result: _Result, report: _Report, errors: list[dict[str, Any]]
) -> None:
    if args.json:
        payload: dict[str, Any] = {args.command: result.data}
        if errors:
            payload["errors"] = errors
        if report.warnings and args.command != "doctor":
            payload["warnings"] = report.warnings
        print(json.dumps(payload, indent=2, default=str))
    else:
        if result.lines:
            print("\n".join(result.lines))
        if errors:
            print(*(f"{e['problem']}: {e['message']}" for e in errors), sep="\n", file=sys.stderr)
        if report.warnings and args.command != "doctor":
            print("\nwarnings:", *report.warnings, sep="\n  ", file=sys.stderr)
    sys.stdout.flush()
