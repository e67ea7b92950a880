"""One reading of every yes/no environment variable tocsin obeys.

``TOCSIN_PURE_PYTHON``, ``TOCSIN_NO_CACHE``, ``TOCSIN_DISABLE_PLUGIN_AUTOLOAD`` and
``TOCSIN_STRICT_PLUGINS`` (and ``TOCSIN_PURE_PYTHON`` again in ``setup.py``, at
install time) all go through :func:`parse_switch`, so the same word means the same
thing everywhere.  Before this module each read its own way, and
``TOCSIN_PURE_PYTHON=false`` turned the C send *off* (issue 14).

A word tocsin does not know is an error rather than a guess: an operator who writes
``TOCSIN_NO_CACHE=disabled`` meant something, and either reading of it could be the
wrong one.

This module is imported while ``import tocsin`` runs (by the send, for
``TOCSIN_PURE_PYTHON``) and by ``setup.py`` on its own, so it imports only :mod:`os`
(loaded by the interpreter before any user code) and :mod:`tocsin._errors`.
"""

from __future__ import annotations

import os

from tocsin._errors import PluginConfigError

# Not typing.TYPE_CHECKING: importing typing is slow (see tocsin._refs).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["FALSE_WORDS", "TRUE_WORDS", "env_switch", "parse_switch"]

#: The words that switch something on (compared case-insensitively, spaces around ignored).
TRUE_WORDS = ("1", "true", "yes", "on")
#: The words that leave it off; an empty value (``VAR=``) is the same as unset.
FALSE_WORDS = ("0", "false", "no", "off", "")


def parse_switch(variable: str, raw: str | None) -> bool:
    """Whether the value *raw* of the environment variable *variable* means "on".

    ``None`` (unset) and the :data:`FALSE_WORDS` are off, the :data:`TRUE_WORDS` on;
    anything else raises :class:`~tocsin.PluginConfigError` naming the variable, its
    value and the accepted words.
    """
    if raw is None:
        return False
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise PluginConfigError(
        f"Environment variable {variable}={raw!r} is not a yes/no value; use 1 or 0. "
        f"Also accepted: {', '.join(TRUE_WORDS[1:])} (for 1) and "
        f"{', '.join(FALSE_WORDS[1:-1])} or an empty value (for 0), in any case, with or "
        f"without spaces around."
    )


def env_switch(variable: str, environ: Mapping[str, str] | None = None) -> bool:
    """:func:`parse_switch` of *variable* in *environ* (default :data:`os.environ`)."""
    return parse_switch(variable, (os.environ if environ is None else environ).get(variable))
