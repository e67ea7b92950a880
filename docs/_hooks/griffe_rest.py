"""A griffe extension: tocsin's reStructuredText-flavoured docstrings, as Markdown.

The docstrings are written for readers of the source and of ``help()``, in the
reStructuredText habits of the Python world.  mkdocstrings renders Markdown, so before
rendering, this extension rewrites what Markdown would garble:

* roles, ``:class:`~tocsin.Signal```, become code spans (`Signal`);
* ``.. versionadded:: 0.1 text`` and ``.. versionchanged::`` become an italic note;
* a paragraph ending in ``::`` (a literal block follows) ends in ``:``;
* simple tables (rows between ``====  ====`` rules) become preformatted blocks;
* ``\\ `` (an escaped space, used for plurals of code: ``uid``\\ s) disappears.

Indented literal blocks need nothing: they are Markdown code blocks already.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`]+)`")
VERSION = re.compile(r"^(\s*)\.\. version(added|changed)::\s*(\S+)\s*(.*)$")
RULE = re.compile(r"^\s*=+( +=+)+\s*$")


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    if short:
        target = target.rpartition(".")[2]
    return f"`{target}`"


def rest_to_markdown(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    in_table = False
    rules_seen = 0
    for index, line in enumerate(lines):
        if RULE.match(line):
            if not in_table:
                in_table, rules_seen = True, 0
                out.append("```text")
            rules_seen += 1
            out.append(line)
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if rules_seen >= 3 or (rules_seen >= 2 and not following.strip()):
                out.append("```")
                in_table = False
            continue
        if in_table:
            out.append(line)
            continue
        version = VERSION.match(line)
        if version:
            indent, kind, number, rest = version.groups()
            label = "New" if kind == "added" else "Changed"
            out.append(f"{indent}*{label} in version {number}*{': ' + rest if rest else '.'}")
            continue
        line = ROLE.sub(_role, line).replace("\\ ", "")
        if line.rstrip().endswith("::") and not line.strip().startswith(("::", ">>>")):
            stripped = line.rstrip()[:-2].rstrip()
            line = stripped + ":" if stripped else ""
        out.append(line)
    if in_table:
        out.append("```")
    return "\n".join(out)


class RestToMarkdown(griffe.Extension):
    """Rewrite every docstring griffe loads (see the module documentation)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None:
            docstring.value = rest_to_markdown(docstring.value)
