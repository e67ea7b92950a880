"""What ``TOCSIN_PLUGINS`` (``allowed=``, ``plugins = [...]``, ``TOCSIN["plugins"]``)
means, as the documentation says it (issue 13): ``load()`` enables only the plugins
it names; every other installed plugin is listed but never imported, exactly as a
disabled one, and ``enable()`` in the application's code still enables it.  A name
that is both allowed and disabled stays disabled; with autoload off nothing loads.

In fresh interpreters, with the pip-built test plugins (tests/plugin_helpers.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from plugin_helpers import ALL_NAMES

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """
import tt_host
pm = PluginManager(GROUP)
out["loaded"] = pm.load()
out["listed"] = list(pm)
out["imported_after_load"] = imported()
out["ping"] = fired(tt_host.ping)
pm.enable("alpha")  # not in the allow-list: the application's code may still enable it
out["alpha"] = [pm["alpha"].enabled, pm["alpha"].loaded]
out["ping_after_enable"] = fired(tt_host.ping)
"""


def test_only_the_allowed_load_the_others_are_listed_and_enable_still_works(
    scenario: Any,
) -> None:
    result = scenario(PROGRAM, env={"TOCSIN_PLUGINS": "gamma,a-first"})
    assert result["loaded"] == ["a-first", "gamma"]
    assert result["listed"] == ALL_NAMES  # the others are listed...
    assert result["imported_after_load"] == ["tt_gamma", "tt_zz_first"]  # ...not imported
    assert result["ping"] == ["a-first"]
    assert result["alpha"] == [True, True]
    assert result["ping_after_enable"] == ["a-first", "alpha-any"]
    assert result["warnings"] == []


@pytest.mark.parametrize(
    ("env", "loaded"),
    [
        ({"TOCSIN_PLUGINS": "gamma,a-first", "TOCSIN_DISABLED_PLUGINS": "gamma"}, ["a-first"]),
        ({"TOCSIN_PLUGINS": "gamma", "TOCSIN_DISABLE_PLUGIN_AUTOLOAD": "1"}, []),
        ({"TOCSIN_PLUGINS": ""}, []),  # an empty list names no plugin: none load
    ],
    ids=["disabled-wins", "autoload-off", "empty"],
)
def test_the_allow_list_with_the_other_settings(
    scenario: Any, env: dict[str, str], loaded: list[str]
) -> None:
    result = scenario(PROGRAM, env=env)
    assert result["loaded"] == loaded
    assert result["listed"] == ALL_NAMES


DOCUMENTS = [
    "README.md",
    "docs/how-to/disable-plugins.md",
    "docs/integrations/django.md",
    "docs/integrations/flask.md",
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_documentation_says_what_the_allow_list_means(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    # Not a promise the code does not keep (enable() is not refused)...
    assert not re.search(r"only these may be enabled", text, re.IGNORECASE)
    # ...but what it does: only these load; the others are listed, never imported.
    assert re.search(r"only these (plugins )?load", text), document
