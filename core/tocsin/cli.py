"""The ``tocsin`` command: what is installed, what listens to what, and what is wrong.

tocsin plugins [--json]   each plugin: distribution, version, state, receivers
tocsin signals [--json]   each known signal, its arguments, receivers and owners
tocsin doctor  [--json]   broken plugins, name clashes, dispatch_uid conflicts,
                          receivers that do not fit their signal; exit 1 if any
tocsin --version          the installed version (``tocsin.__version__``)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tocsin._errors import TocsinPluginWarning
from tocsin._manager import DEFAULT_GROUP, PluginManager
from tocsin._refs import describe, receiver_identity
from tocsin._signal import Signal

__all__ = ["main"]


@dataclass
class _Report:
    """What loading the plugins showed, gathered once for every command."""

    manager: PluginManager
    warnings: list[str] = field(default_factory=list)
    owners: dict[tuple[int, Hashable], str] = field(default_factory=dict)
    signals: list[Signal] = field(default_factory=list)


def _gather(manager: PluginManager) -> _Report:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TocsinPluginWarning)
        manager.load()
    report = _Report(manager, [str(w.message) for w in caught])
    known: dict[int, Signal] = {}
    from tocsin import signals as catalogue

    for name in catalogue.__all__:
        signal = getattr(catalogue, name)
        known[id(signal)] = signal
    for contributed in manager.hook.tocsin_signals():
        for signal in contributed or ():
            known.setdefault(id(signal), signal)
    for plugin_name in manager:
        for owned in manager[plugin_name].receivers:
            known.setdefault(id(owned.signal), owned.signal)
            if owned.connected:
                key = (id(owned.signal), receiver_identity(owned.receiver))
                report.owners[key] = plugin_name
    report.signals = sorted(known.values(), key=lambda s: s.name or "")
    return report


def _owner(report: _Report, signal: Signal, receiver: Callable[..., Any]) -> str | None:
    return report.owners.get((id(signal), receiver_identity(receiver)))


# -- commands -------------------------------------------------------------------------


def _plugins(report: _Report) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    cells: list[list[str]] = []
    for name in report.manager:
        info = report.manager[name]
        error = None if info.error is None else f"{type(info.error).__name__}: {info.error}"
        connected = sum(r.connected for r in info.receivers)
        rows.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "enabled": info.enabled,
                "loaded": info.loaded,
                "error": error,
                "receivers": connected,
            }
        )
        cells.append(
            [
                info.name,
                info.distribution or "(registered by hand)",
                info.version or "",
                "yes" if info.enabled else "no",
                "yes" if info.loaded else "no",
                str(connected),
                error or "",
            ]
        )
    header = ["plugin", "distribution", "version", "enabled", "loaded", "receivers", "error"]
    lines = _table(header, cells)
    if not rows:
        lines = [f"No plugins installed in group {report.manager.group!r}."]
    return rows, lines


def _signals(report: _Report) -> tuple[list[dict[str, Any]], list[str]]:
    rows = []
    lines: list[str] = []
    for signal in report.signals:
        receivers = [
            {"receiver": describe(r), "plugin": _owner(report, signal, r)} for r in signal.receivers
        ]
        rows.append(
            {
                "signal": signal.name,
                "arguments": list(signal.providing_args),
                "receivers": receivers,
            }
        )
        lines.append(f"{signal.name}({', '.join(signal.providing_args)})")
        for item in receivers:
            owner = f"  [plugin {item['plugin']}]" if item["plugin"] else ""
            lines.append(f"    -> {item['receiver']}{owner}")
        if not receivers:
            lines.append("    (no receivers)")
    return rows, lines


def _doctor(report: _Report) -> tuple[list[dict[str, Any]], list[str]]:
    problems: list[dict[str, Any]] = []

    def problem(kind: str, message: str, **details: Any) -> None:
        problems.append({"problem": kind, "message": message, **details})

    manager = report.manager
    for name in manager:
        info = manager[name]
        if info.error is not None:
            problem(
                "broken-plugin",
                f"plugin {name!r} ({info.distribution}) failed: "
                f"{type(info.error).__name__}: {info.error}",
                plugin=name,
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
                dispatch_uid=repr(owned.dispatch_uid),
            )
    for signal in report.signals:
        if not signal.providing_args:
            continue
        for receiver in signal.receivers:
            unknown = _unexpected_parameters(receiver, signal.providing_args)
            if unknown:
                owner = _owner(report, signal, receiver)
                problem(
                    "receiver-arguments",
                    f"{describe(receiver)}{f' (plugin {owner})' if owner else ''} requires "
                    f"{', '.join(unknown)}, which {signal.name} does not provide "
                    f"(it provides {', '.join(signal.providing_args)})",
                    signal=signal.name,
                    receiver=describe(receiver),
                    parameters=unknown,
                )
    settings = manager.settings()
    for name, source in settings.named_plugins():
        if name not in manager:
            problem(
                "unknown-plugin-name",
                f"{source} names plugin {name!r}, which is not installed",
                plugin=name,
                source=source,
            )
    lines = [f"{p['problem']}: {p['message']}" for p in problems]
    if not problems:
        lines = [f"No problems found ({len(manager)} plugins, {len(report.signals)} signals)."]
    return problems, lines


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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, helptext in (
        ("plugins", "list installed plugins and their state"),
        ("signals", "list known signals, their arguments and receivers"),
        ("doctor", "check plugins and receivers; exit 1 if anything is wrong"),
    ):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    # The commands report problems themselves; keep the library's log records (and
    # their tracebacks) from also reaching the terminal through logging's last resort.
    logging.getLogger("tocsin").addHandler(logging.NullHandler())
    report = _gather(manager if manager is not None else PluginManager(args.group))
    data, lines = _COMMANDS[args.command](report)
    if args.json:
        payload: dict[str, Any] = {args.command: data}
        if report.warnings and args.command != "doctor":
            payload["warnings"] = report.warnings
        print(json.dumps(payload, indent=2, default=str))
    else:
        print("\n".join(lines))
        if report.warnings and args.command != "doctor":
            print("\nwarnings:", *report.warnings, sep="\n  ", file=sys.stderr)
    return 1 if args.command == "doctor" and data else 0
