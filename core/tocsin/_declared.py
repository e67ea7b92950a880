"""Receivers declared in entry-point metadata, imported the first time they are needed.

A plugin distribution may declare each of its receivers in its ``pyproject.toml``
instead of leaving tocsin to import its module at start-up to find out::

    [project.entry-points."tocsin.plugins.receivers"]
    "acme-audit tocsin.signals:user_logged_in uid acme:login" = "acme_audit.auth:on_login"
    "acme-audit shop.signals:paid sender shop.models:Shop priority 5" = "acme_audit.mail:on_paid"

The entry point's **value** is the receiver (``module:qualname``).  Its **name** is a
line of whitespace-separated words (an entry-point name may hold anything but ``=``,
and ``importlib.metadata`` keeps it as written):

* the plugin's name, then the signal (``module:qualname``);
* optionally ``sender X``: ``X`` is an import path (``module:qualname``), a quoted
  string (``"bank"``, matched by value) or an integer (matched by value);
* optionally ``uid U`` (the ``dispatch_uid``; quote it if it has spaces) and
  ``priority N``.

At ``load()`` the signal (and a sender given by path) is imported, which is the
application's code, and a stand-in (:class:`DeclaredReceiver`) is connected in the
receiver's place with the declared options.  The plugin's own code is not imported
until a send reaches a stand-in: then the manager imports the plugin, registers it with
pluggy, puts the real receivers in the stand-ins' places (same order, same options)
and calls the receiver.  A send that reaches none of a plugin's declarations imports
nothing of it.  :func:`problems` checks a declaration without running the plugin's
code (``importlib.util.find_spec`` for modules, the module's source for names).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, final

from tocsin._errors import DeclarationError

__all__ = [
    "Declaration",
    "DeclarationError",
    "DeclaredReceiver",
    "parse_declaration",
    "problems",
    "resolve_path",
]

#: ``module:qualname``, as entry-point values write objects.
PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_INTEGER = re.compile(r"^[+-]?\d+$")


class Declaration(NamedTuple):
    """One receiver a plugin declares in its entry-point metadata."""

    #: The plugin it belongs to.
    plugin: str
    #: The signal, ``module:qualname``.
    signal: str
    #: The receiver, ``module:qualname``.
    receiver: str
    #: ``None`` (any sender), an import path, or a str or int matched by value.
    sender: str | int | None
    #: Whether :attr:`sender` is an import path (else a literal, or None).
    sender_is_path: bool
    dispatch_uid: str | None
    priority: int
    #: The entry point as written (``name = value``), for messages.
    source: str

    @property
    def module(self) -> str:
        """The module the receiver is in: what a send imports."""
        return self.receiver.partition(":")[0]


def parse_declaration(name: str, value: str) -> Declaration:
    """Read one entry point of the receivers group; raise :class:`DeclarationError`."""
    source = f"{name} = {value}"
    example = (
        '"my-plugin shop.signals:order_paid sender shop.models:Shop uid my:paid '
        'priority 5" = "my_plugin.receivers:on_paid"'
    )
    try:
        words = shlex.split(name, posix=False)
    except ValueError as error:
        raise DeclarationError(f"{source}: {error}. Write it as {example}.") from None
    if len(words) < 2 or not PATH.match(words[1]):
        raise DeclarationError(
            f"{source}: the name must start with the plugin's name and the signal "
            f"(module:qualname), as in {example}."
        )
    receiver = value.strip()
    if not PATH.match(receiver):
        raise DeclarationError(
            f"{source}: the value must be the receiver as module:qualname, as in {example}."
        )
    plugin, signal = words[0], words[1]
    options: dict[str, str] = {}
    rest = words[2:]
    while rest:
        if len(rest) < 2 or rest[0] not in ("sender", "uid", "priority"):
            raise DeclarationError(
                f"{source}: after the signal come 'sender X', 'uid U' and 'priority N' "
                f"(each at most once), not {' '.join(rest)!r}."
            )
        key, word, rest = rest[0], rest[1], rest[2:]
        if key in options:
            raise DeclarationError(f"{source}: {key!r} is given twice.")
        options[key] = word
    sender: str | int | None = None
    sender_is_path = False
    if "sender" in options:
        sender, sender_is_path = _sender(options["sender"], source)
    priority = 0
    if "priority" in options:
        if not _INTEGER.match(options["priority"]):
            raise DeclarationError(f"{source}: priority must be an integer.")
        priority = int(options["priority"])
    uid = options.get("uid")
    if uid is not None:
        uid = _unquoted(uid)
    return Declaration(plugin, signal, receiver, sender, sender_is_path, uid, priority, source)


def _sender(word: str, source: str) -> tuple[str | int, bool]:
    if word[:1] in ("'", '"'):
        return _unquoted(word), False
    if _INTEGER.match(word):
        return int(word), False
    if PATH.match(word):
        return word, True
    raise DeclarationError(
        f"{source}: sender {word!r} is neither an import path (module:qualname), nor a "
        f'quoted string ("bank"), nor an integer.'
    )


def _unquoted(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] and word[0] in ("'", '"'):
        return word[1:-1]
    return word


def resolve_path(path: str) -> Any:
    """Import ``module:qualname`` and return the object (ImportError, AttributeError)."""
    import importlib

    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# -- the stand-in -----------------------------------------------------------------------


class _Materializer(Protocol):
    def __call__(self, standin: DeclaredReceiver) -> Callable[..., Any] | None: ...


@final
class DeclaredReceiver:
    """Connected in a declared receiver's place until a send reaches it; then asks the
    plugin manager for the real receiver (importing the plugin the first time) and
    calls it.  The manager then connects the real receiver in its place."""

    __slots__ = ("__weakref__", "_materialize", "declaration")

    def __init__(self, declaration: Declaration, materialize: _Materializer) -> None:
        #: What the plugin declared.
        self.declaration = declaration
        self._materialize = materialize

    def __repr__(self) -> str:  # what messages and the CLI show for it
        declaration = self.declaration
        return (
            f"<{declaration.receiver}, declared by plugin {declaration.plugin!r}, not imported yet>"
        )

    def __call__(self, **named: Any) -> Any:
        real = self._materialize(self)
        if real is None:  # the plugin was disabled meanwhile
            return None
        return real(**named)


# -- checking without importing -----------------------------------------------------------


def problems(declaration: Declaration) -> list[str]:
    """What is wrong with *declaration*'s receiver path, found without running the
    plugin's code: its module must be findable (``importlib.util.find_spec`` on each
    package level, which imports no parent package) and its source must define the
    name.  Signals and senders are the application's: they are imported at ``load()``
    and checked there."""
    module, _, qualname = declaration.receiver.partition(":")
    spec = _find_spec(module)
    if spec is None:
        return [f"{declaration.source}: module {module!r} is not installed."]
    origin = getattr(spec, "origin", None)
    if not origin or not str(origin).endswith(".py"):
        return []  # a compiled module: only importing it would tell
    try:
        with open(origin, encoding="utf-8") as file:
            text = file.read()
    except OSError as error:
        return [f"{declaration.source}: cannot read {origin}: {error}."]
    if not _defines(text, qualname.split(".")):
        return [f"{declaration.source}: {origin} defines no {qualname!r}."]
    return []


def _find_spec(module: str) -> Any:
    """The spec of *module*, found level by level without importing any package."""
    import importlib.machinery
    import importlib.util
    import sys

    if module in sys.modules:
        return getattr(sys.modules[module], "__spec__", None) or object()
    parts = module.split(".")
    spec = importlib.util.find_spec(parts[0])
    for depth in range(1, len(parts)):
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(
            ".".join(parts[: depth + 1]), list(spec.submodule_search_locations)
        )
    return spec


def _defines(text: str, names: list[str]) -> bool:
    """Whether the source *text* defines the dotted name at its top level (a def, a
    class, an assignment or an import), looking into classes for dotted names."""
    import ast

    try:
        body: list[ast.stmt] = ast.parse(text).body
    except SyntaxError:
        return False
    for depth, name in enumerate(names):
        found: ast.stmt | None = None
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name == name:
                    found = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    found = node
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                (a.asname or a.name.split(".")[0]) == name for a in node.names
            ):
                found = node
        if found is None:
            return False
        if depth < len(names) - 1:
            if not isinstance(found, ast.ClassDef):
                return True  # an attribute of something not a class: importing would tell
            body = found.body
    return True
