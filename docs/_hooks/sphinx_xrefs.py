"""A griffe extension: Sphinx cross-reference roles in docstrings become mkdocstrings links.

mkdocstrings parses tocsin's docstrings itself (``docstring_style: sphinx``), but neither
it nor griffe nor any griffe extension on PyPI knows inline cross-reference roles such as
``:class:`~tocsin.Signal```: Markdown would show them as ``:class:`` and a code span.
This extension rewrites only those roles, into the cross-reference that mkdocstrings
itself emits for signatures (an optional ``<autoref>``): a link where the target is
documented on this site, a code span with the full name as its tooltip where it is not
(``sqlalchemy.orm.Session``, say).  ``~`` shows the last part of the name, as in Sphinx;
a name without a module is looked up from the documented object, as Python would.
Sphinx's ``.. versionadded::`` and ``.. versionchanged::`` lines (blinker's habit, which
tocsin follows) become an italic "Added in" / "Changed in" sentence.  Everything else in
a docstring is left to mkdocstrings.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")
VERSION = re.compile(r"^(\s*)\.\. version(added|changed):: *(\S+) *(.*)$", re.MULTILINE)
VERSION_WORDS = {"added": "Added", "changed": "Changed"}


def identifier(obj: griffe.Object, name: str) -> str:
    """The full path that *name*, as written in *obj*'s docstring, refers to: looked up
    from there (the object itself, its class, its module, then the top-level package's
    public names), else taken as a full path already (``sqlalchemy.orm.Session``)."""
    head, dot, rest = name.partition(".")
    scopes = [obj]
    if obj.parent is not None and obj.parent.is_class:
        scopes.append(obj.parent)
    scopes += [obj.module, obj.package]
    for scope in scopes:
        member = scope.all_members.get(head) if scope.is_class else scope.members.get(head)
        if member is None:
            continue
        path = member.target_path if isinstance(member, griffe.Alias) else member.path
        return path + dot + rest
    return name


def cross_references(obj: griffe.Object, text: str) -> str:
    def link(match: re.Match[str]) -> str:
        short, name = match.groups()
        title = name.rpartition(".")[2] if short else name
        target = escape(identifier(obj, name), quote=True)
        return f'<autoref identifier="{target}" optional><code>{escape(title)}</code></autoref>'

    def version(match: re.Match[str]) -> str:
        indent, kind, number, rest = match.groups()
        return f"{indent}*{VERSION_WORDS[kind]} in {number}:* {rest}".rstrip()

    return VERSION.sub(version, ROLE.sub(link, text))


class SphinxCrossReferences(griffe.Extension):
    """Rewrite the roles of every docstring griffe loads (see the module's docstring)."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        # Once the whole tree is loaded, so that names resolve to what they refer to.
        if obj.docstring is not None:
            obj.docstring.value = cross_references(obj, obj.docstring.value)
