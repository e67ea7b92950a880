"""One parser for every yes/no environment variable (tocsin._switches)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tocsin import PluginConfigError
from tocsin._switches import FALSE_WORDS, TRUE_WORDS, env_switch, parse_switch


def spellings(words: tuple[str, ...]) -> list[str]:
    """Each word as written, in capitals, capitalized, and with spaces around."""
    found = []
    for word in words:
        found += [word, word.upper(), word.capitalize(), f"  {word}\t", f"\n{word.upper()} "]
    return sorted(set(found))


YES = spellings(TRUE_WORDS)
NO = spellings(FALSE_WORDS)
#: Words an operator might write that are not yes/no words: each is an error.
UNKNOWN = [
    "maybe",
    "2",
    "-1",
    "1.0",
    "y",
    "n",
    "t",
    "f",
    "enable",
    "enabled",
    "disabled",
    "none",
    "null",
    "ja",
    "yes please",
    "o n",
    "on\x00",
    "\N{FULLWIDTH DIGIT ONE}",
    "tru",
    "'1'",
]


def test_the_words() -> None:
    assert TRUE_WORDS == ("1", "true", "yes", "on")
    assert FALSE_WORDS == ("0", "false", "no", "off", "")


@pytest.mark.parametrize("raw", YES)
def test_yes_words(raw: str) -> None:
    assert parse_switch("TOCSIN_X", raw) is True


@pytest.mark.parametrize("raw", NO)
def test_no_words(raw: str) -> None:
    assert parse_switch("TOCSIN_X", raw) is False


def test_unset_is_no() -> None:
    assert parse_switch("TOCSIN_X", None) is False
    assert env_switch("TOCSIN_X", {}) is False


@pytest.mark.parametrize("raw", UNKNOWN)
def test_any_other_word_is_an_error_naming_the_variable_and_the_words(raw: str) -> None:
    with pytest.raises(PluginConfigError) as raised:
        parse_switch("TOCSIN_SOMETHING", raw)
    assert str(raised.value) == (
        f"Environment variable TOCSIN_SOMETHING={raw!r} is not a yes/no value; use 1 or 0. "
        f"Also accepted: true, yes, on (for 1) and false, no, off or an empty value (for 0), "
        f"in any case, with or without spaces around."
    )
    assert isinstance(raised.value, ValueError)


def test_env_switch_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOCSIN_TEST_SWITCH", " Off ")
    assert env_switch("TOCSIN_TEST_SWITCH") is False
    monkeypatch.setenv("TOCSIN_TEST_SWITCH", "YES")
    assert env_switch("TOCSIN_TEST_SWITCH") is True
    assert env_switch("TOCSIN_TEST_SWITCH", {"TOCSIN_TEST_SWITCH": "0"}) is False
    monkeypatch.setenv("TOCSIN_TEST_SWITCH", "perhaps")
    with pytest.raises(PluginConfigError, match="TOCSIN_TEST_SWITCH='perhaps'"):
        env_switch("TOCSIN_TEST_SWITCH")


def test_the_module_imports_only_os_and_tocsin_errors() -> None:
    """It is read while `import tocsin` runs, and loaded by setup.py on its own."""
    import tocsin._switches as module

    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    imported = set()
    for node in tree.body:  # module level; `if TYPE_CHECKING:` blocks are not run
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported == {"__future__", "os", "typing", "tocsin._errors"}
