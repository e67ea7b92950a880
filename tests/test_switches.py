"""One parser for every yes/no environment variable (tocsin._switches), and each place
that reads one: the plugin settings (tests/test_settings.py), TOCSIN_NO_CACHE
(tests/test_discovery.py), and TOCSIN_PURE_PYTHON at install time and at run time
(here)."""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tocsin import PluginConfigError
from tocsin._switches import FALSE_WORDS, TRUE_WORDS, env_switch, parse_switch
from tocsin.testing import pip_install


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
    # Not even typing (its TYPE_CHECKING is a constant of its own): `import tocsin`
    # does not import typing (issue 13).
    assert imported == {"__future__", "os", "tocsin._errors"}


# -- TOCSIN_PURE_PYTHON ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
PROBE = "import tocsin._send as s; print(s.COMPILED)"


def _source(tmp_path: Path) -> Path:
    """A copy of this checkout that pip can build (no built extension in it)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "core", source / "core", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    return source


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, word: str) -> bool:
    """Install tocsin with TOCSIN_PURE_PYTHON=*word*; whether the C send was built."""
    monkeypatch.setenv("TOCSIN_PURE_PYTHON", word)
    pip_install([_source(tmp_path)], tmp_path / "site", what="tocsin")
    monkeypatch.delenv("TOCSIN_PURE_PYTHON")
    return bool(list((tmp_path / "site" / "tocsin").glob("_speedups*")))


@pytest.mark.parametrize("word", ["maybe", "enabled", "2"])
def test_an_unknown_word_at_install_time_fails_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, word: str
) -> None:
    with pytest.raises(RuntimeError) as raised:
        _install(tmp_path, monkeypatch, word)
    output = str(raised.value)
    assert f"error: installing tocsin: Environment variable TOCSIN_PURE_PYTHON={word!r}" in output
    assert "true, yes, on (for 1)" in output
    assert not (tmp_path / "site" / "tocsin").exists()


def test_yes_at_install_time_installs_pure_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _install(tmp_path, monkeypatch, " Yes ") is False


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler here")
def test_false_at_install_time_builds_the_c_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOCSIN_PURE_PYTHON=false used to mean "pure Python": any non-empty value but 0 did."""
    assert _install(tmp_path, monkeypatch, "false") is True


@pytest.mark.parametrize(("word", "compiled"), [("false", True), ("off", True), ("no", True)])
def test_the_run_time_switch_reads_the_same_words(word: str, compiled: bool) -> None:
    if importlib.util.find_spec("tocsin._speedups") is None:
        pytest.skip("tocsin._speedups is not built here")
    env = {**os.environ, "TOCSIN_PURE_PYTHON": word}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(compiled)
