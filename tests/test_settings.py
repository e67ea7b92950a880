"""Which plugins load: environment, PluginManager() arguments, [tool.tocsin], defaults.

The precedence is unit-tested on ``resolve_settings``; the end-to-end behaviour (what is
imported, what is only listed) in fresh interpreters with the pip-built test plugins,
where a plugin's import is recorded in a marker file as well as in ``sys.modules``.
"""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import Any

import pytest

from plugin_helpers import ALL_NAMES, BROKEN_NAMES, GOOD
from tocsin import PluginConfigError, PluginManager
from tocsin._settings import PluginSettings, find_pyproject, resolve_settings


def pyproject(folder: Path, table: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pyproject.toml"
    path.write_text(
        '[project]\nname = "app"\nversion = "1"\n\n' + textwrap.dedent(table), encoding="utf-8"
    )
    return path


# -- precedence ---------------------------------------------------------------------------

TABLE = """
[tool.tocsin]
autoload = false
disabled = ["from-table"]
plugins = ["from-table"]
strict = true
"""
ARGS = {"autoload": True, "disabled": ["from-args"], "allowed": ["from-args"], "strict": False}
ENV = {
    "TOCSIN_DISABLE_PLUGIN_AUTOLOAD": "1",
    "TOCSIN_DISABLED_PLUGINS": "from-env",
    "TOCSIN_PLUGINS": "from-env",
    "TOCSIN_STRICT_PLUGINS": "1",
}
#: What each source sets: autoload, disabled, allowed, strict.
VALUES = {
    "default": (True, frozenset(), None, False),
    "table": (False, frozenset({"from-table"}), frozenset({"from-table"}), True),
    "args": (True, frozenset({"from-args"}), frozenset({"from-args"}), False),
    "env": (False, frozenset({"from-env"}), frozenset({"from-env"}), True),
}


@pytest.mark.parametrize(
    "present",
    [
        set(combo)
        for size in range(4)
        for combo in itertools.combinations(["table", "args", "env"], size)
    ],
    ids=lambda present: "+".join(sorted(present)) or "nothing",
)
def test_each_setting_comes_from_the_first_source_that_sets_it(
    tmp_path: Path, present: set[str]
) -> None:
    path = pyproject(tmp_path, TABLE if "table" in present else "")
    settings = resolve_settings(
        pyproject=path,
        environ=ENV if "env" in present else {},
        **(ARGS if "args" in present else {}),
    )
    winner = next((s for s in ("env", "args", "table") if s in present), "default")
    autoload, disabled, allowed, strict = VALUES[winner]
    assert settings.autoload is autoload
    assert settings.disabled == disabled
    assert settings.allowed == allowed
    assert settings.strict is strict
    label = {
        "default": "default",
        "table": f"[tool.tocsin] in {path}",
        "args": "PluginManager() arguments",
        "env": "environment",
    }[winner]
    assert all(source.startswith(label) for source in settings.sources.values())


def test_each_setting_is_resolved_on_its_own(tmp_path: Path) -> None:
    path = pyproject(tmp_path, '[tool.tocsin]\ndisabled = ["a"]\nstrict = true\n')
    settings = resolve_settings(
        pyproject=path, allowed=["b", "c"], environ={"TOCSIN_DISABLE_PLUGIN_AUTOLOAD": "0"}
    )
    assert (settings.autoload, settings.disabled, settings.allowed, settings.strict) == (
        True,
        frozenset({"a"}),
        frozenset({"b", "c"}),
        True,
    )
    assert settings.sources == {
        "autoload": "environment TOCSIN_DISABLE_PLUGIN_AUTOLOAD",
        "disabled": f"[tool.tocsin] in {path}",
        "allowed": "PluginManager() arguments",
        "strict": f"[tool.tocsin] in {path}",
    }


def test_a_source_replaces_a_list_it_does_not_add_to_it(tmp_path: Path) -> None:
    path = pyproject(tmp_path, '[tool.tocsin]\ndisabled = ["a", "b"]\n')
    assert resolve_settings(pyproject=path).disabled == {"a", "b"}
    assert resolve_settings(pyproject=path, disabled=["c"]).disabled == {"c"}
    assert resolve_settings(
        pyproject=path, disabled=["c"], environ={"TOCSIN_DISABLED_PLUGINS": "d"}
    ).disabled == {"d"}
    # An empty list is a value too: it clears what a lower source listed.
    assert resolve_settings(pyproject=path, disabled=[]).disabled == frozenset()
    assert (
        resolve_settings(pyproject=path, environ={"TOCSIN_DISABLED_PLUGINS": ""}).disabled
        == frozenset()
    )


def test_name_lists_are_trimmed(tmp_path: Path) -> None:
    path = pyproject(tmp_path, '[tool.tocsin]\nplugins = [" a ", "b"]\n')
    assert resolve_settings(pyproject=path).allowed == {"a", "b"}
    env = {"TOCSIN_DISABLED_PLUGINS": " x, y ,z "}
    assert resolve_settings(pyproject=path, environ=env).disabled == {"x", "y", "z"}
    assert resolve_settings(pyproject=path, disabled=(n for n in [" p "])).disabled == {"p"}
    for empty in ("", "  "):  # an empty list, which replaces what the table says
        env = {"TOCSIN_DISABLED_PLUGINS": empty}
        assert resolve_settings(pyproject=path, environ=env).disabled == frozenset()


@pytest.mark.parametrize("variable", ["TOCSIN_DISABLED_PLUGINS", "TOCSIN_PLUGINS"])
@pytest.mark.parametrize(
    ("raw", "position"),
    [
        (",,,", "name 1 of 4"),
        ("a,,b", "name 2 of 3"),
        ("a,b,", "name 3 of 3"),
        (",a", "name 1 of 2"),
        (" , ", "name 1 of 2"),
        ("a, ,b", "name 2 of 3"),
    ],
)
def test_an_empty_name_in_an_environment_list_is_an_error(
    tmp_path: Path, variable: str, raw: str, position: str
) -> None:
    """``TOCSIN_PLUGINS=",,,"`` used to be an allow-list of nothing: every plugin off."""
    with pytest.raises(PluginConfigError) as raised:
        resolve_settings(pyproject=pyproject(tmp_path, ""), environ={variable: raw})
    message = str(raised.value)
    assert f"Environment variable {variable}={raw!r} has an empty plugin name ({position})" in (
        message
    )
    assert f"e.g. {variable}=a,b" in message


YES = ["1", "true", "yes", "on", "TRUE", "Yes", "ON", " on ", "\ttrue\n", "True"]
NO = ["0", "false", "no", "off", "", "FALSE", "No", "OFF", " off ", "  ", "\n0\t"]


@pytest.mark.parametrize("raw", YES)
def test_yes_values_of_environment_switches(tmp_path: Path, raw: str) -> None:
    path = pyproject(tmp_path, "")
    env = {"TOCSIN_DISABLE_PLUGIN_AUTOLOAD": raw, "TOCSIN_STRICT_PLUGINS": raw}
    settings = resolve_settings(pyproject=path, environ=env)
    assert (settings.autoload, settings.strict) == (False, True)


@pytest.mark.parametrize("raw", NO)
def test_no_values_of_environment_switches(tmp_path: Path, raw: str) -> None:
    path = pyproject(tmp_path, "[tool.tocsin]\nautoload = false\nstrict = true\n")
    env = {"TOCSIN_DISABLE_PLUGIN_AUTOLOAD": raw, "TOCSIN_STRICT_PLUGINS": raw}
    settings = resolve_settings(pyproject=path, environ=env)
    assert (settings.autoload, settings.strict) == (True, False)


@pytest.mark.parametrize("variable", ["TOCSIN_DISABLE_PLUGIN_AUTOLOAD", "TOCSIN_STRICT_PLUGINS"])
@pytest.mark.parametrize("raw", ["maybe", "2", "y", "enable", "disabled", "none", "-1", "1.0"])
def test_an_environment_switch_that_is_not_yes_or_no_is_an_error(
    tmp_path: Path, variable: str, raw: str
) -> None:
    with pytest.raises(PluginConfigError, match=f"{variable}={raw!r}") as raised:
        resolve_settings(pyproject=pyproject(tmp_path, ""), environ={variable: raw})
    assert "true, yes, on (for 1)" in str(raised.value)
    assert "false, no, off or an empty value (for 0)" in str(raised.value)


def test_the_os_environment_is_read_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOCSIN_PLUGINS", "only-this")
    assert resolve_settings(pyproject=pyproject(tmp_path, "")).allowed == {"only-this"}


# -- bad values, and where they are reported ------------------------------------------------


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ('autoload = "yes"', "autoload must be true or false"),
        ("strict = 1", "strict must be true or false"),
        ('disabled = "alpha"', "disabled must be a list of plugin names"),
        ("plugins = [1]", "plugins must list plugin names"),
        ('disabled = [""]', "must list plugin names"),
        (
            'colour = "red"',
            "unknown keys colour; known keys: autoload, disabled, plugins, state, "
            "state_interval, strict",
        ),
    ],
)
def test_bad_values_in_the_table_name_the_file_and_the_key(
    tmp_path: Path, table: str, match: str
) -> None:
    path = pyproject(tmp_path, f"[tool.tocsin]\n{table}\n")
    with pytest.raises(PluginConfigError, match=match) as raised:
        resolve_settings(pyproject=path, environ={})
    assert str(path) in str(raised.value)
    assert isinstance(raised.value, ValueError)


#: Every way a pyproject.toml can be malformed for tocsin: raw text (or bytes), and
#: what the error says.  Each mentions "tocsin" somewhere, or it would not be parsed.
MALFORMED: dict[str, tuple[str | bytes, str]] = {
    "not-toml": ("[tool.tocsin\nautoload = false\n", "is not valid TOML"),
    "tool-is-a-number": (
        'tool = 5\n[project]\nname = "tocsin-app"\n',
        "[tool] in {path} must be a table (as PEP 518 has it), not an integer",
    ),
    "tool-is-text": (
        'tool = "tocsin"\n',
        "[tool] in {path} must be a table (as PEP 518 has it), not a string",
    ),
    "tool-is-an-array-of-tables": (
        "[[tool]]\ntocsin = 1\n",
        "[tool] in {path} must be a table (as PEP 518 has it), not an array of tables",
    ),
    "tool-is-an-array": ('tool = ["tocsin"]\n', "not an array"),
    "tocsin-is-a-number": (
        "[tool]\ntocsin = 3\n",
        "[tool.tocsin] in {path} must be a table, not an integer",
    ),
    "tocsin-is-text": (
        '[tool]\ntocsin = "on"\n',
        "[tool.tocsin] in {path} must be a table, not a string",
    ),
    "tocsin-is-an-array-of-tables": (
        "[[tool.tocsin]]\nstrict = true\n",
        "must be a table, not an array of tables",
    ),
    "not-utf8": (
        b'[tool.tocsin]\ndisabled = ["caf\xe9"]\n',
        "{path} is not valid TOML: TOML files "
        "are UTF-8, and byte 30 is not (invalid continuation byte)",
    ),
    "utf16": (b"\xff\xfe[\x00t\x00o\x00o\x00l\x00]\x00tocsin", "is not valid TOML"),
    "disabled-is-a-table": (
        "[tool.tocsin]\ndisabled = {a = 1}\n",
        "disabled must be a list of plugin names, not {{'a': 1}}",
    ),
    "plugins-is-a-table": (
        "[tool.tocsin.plugins]\na = true\n",
        "plugins must be a list of plugin names",
    ),
    "disabled-is-text": (
        '[tool.tocsin]\ndisabled = "alpha"\n',
        "disabled must be a list of plugin names",
    ),
    "a-number-in-a-list": (
        '[tool.tocsin]\nplugins = ["a", 1]\n',
        "plugins must list plugin names; 1 is not one",
    ),
    "a-list-in-a-list": (
        '[tool.tocsin]\ndisabled = [["a"]]\n',
        "disabled must list plugin names; ['a'] is not one",
    ),
    "a-boolean-in-a-list": (
        "[tool.tocsin]\ndisabled = [true]\n",
        "disabled must list plugin names; True is not one",
    ),
    "a-table-in-a-list": (
        "[tool.tocsin]\ndisabled = [{a = 1}]\n",
        "disabled must list plugin names",
    ),
    "an-empty-name": (
        '[tool.tocsin]\nplugins = ["a", "  "]\n',
        "plugins must list plugin names; '  ' is not one",
    ),
    "autoload-is-text": (
        '[tool.tocsin]\nautoload = "false"\n',
        "autoload must be true or false, not 'false'",
    ),
    "strict-is-a-number": ("[tool.tocsin]\nstrict = 0\n", "strict must be true or false, not 0"),
    "unknown-key": ("[tool.tocsin]\nautolaod = false\n", "unknown keys autolaod"),
}


@pytest.mark.parametrize(("content", "message"), MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("how", ["named", "found"])
def test_every_malformed_pyproject_is_an_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes, message: str, how: str
) -> None:
    """Given as PluginManager(pyproject=...), or found in a parent folder of the
    working directory: never a raw AttributeError or UnicodeDecodeError."""
    path = tmp_path / "app" / "pyproject.toml"
    path.parent.mkdir()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if how == "named":
        manager = PluginManager("tocsintest.none", pyproject=str(path))
    else:
        (tmp_path / "app" / "src" / "pkg").mkdir(parents=True)
        monkeypatch.chdir(tmp_path / "app" / "src" / "pkg")
        manager = PluginManager("tocsintest.none")
    for attempt in (manager.settings, manager.load):
        with pytest.raises(PluginConfigError) as raised:
            attempt()
        assert str(path) in str(raised.value)
        assert message.format(path=path) in str(raised.value)


def test_a_pyproject_without_tocsin_is_not_parsed(tmp_path: Path) -> None:
    """Other tools' business, however it is written: not even decoded."""
    for content in (b"tool = 5\n", b"[[tool]]\nx = 1\n", b"\xff\xfe not toml [[["):
        path = tmp_path / "pyproject.toml"
        path.write_bytes(content)
        settings = resolve_settings(pyproject=path, environ={})
        assert settings.sources == dict.fromkeys(
            ["autoload", "disabled", "allowed", "strict"], "default"
        )


def test_a_named_pyproject_that_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PluginConfigError, match="Cannot read"):
        resolve_settings(pyproject=tmp_path / "missing.toml", environ={})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"disabled": "alpha"}, "disabled must be a list of plugin names"),
        ({"allowed": "alpha"}, "allowed must be a list of plugin names"),
        ({"allowed": [None]}, "must list plugin names"),
        ({"autoload": "yes"}, "autoload must be true or false"),
        ({"strict": 1}, "strict must be true or false"),
    ],
)
def test_bad_manager_arguments_are_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], match: str
) -> None:
    monkeypatch.chdir(tmp_path)
    pm = PluginManager("tocsintest.none", **options)
    with pytest.raises(PluginConfigError, match=f"PluginManager\\(\\) arguments: .*{match}"):
        pm.settings()
    with pytest.raises(PluginConfigError):
        pm.load()


def test_the_group_must_be_a_non_empty_string() -> None:
    for bad in ("", None, 3):
        with pytest.raises(TypeError, match="group"):
            PluginManager(bad)  # type: ignore[arg-type]


# -- finding pyproject.toml ----------------------------------------------------------------


def test_the_nearest_pyproject_from_the_working_directory_up_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outer = pyproject(tmp_path / "app", '[tool.tocsin]\ndisabled = ["outer"]\n')
    deep = tmp_path / "app" / "src" / "pkg"
    deep.mkdir(parents=True)
    assert find_pyproject(deep) == str(outer)
    monkeypatch.chdir(deep)
    settings = resolve_settings(environ={})
    assert settings.disabled == {"outer"}
    assert settings.sources["disabled"] == f"[tool.tocsin] in {outer}"
    # The nearest file wins, with or without a table.
    inner = pyproject(tmp_path / "app" / "src", "")
    assert find_pyproject(deep) == str(inner)
    assert find_pyproject() == str(inner)  # what load() uses: from the working directory
    assert find_pyproject(tmp_path / "app") == str(outer)
    assert find_pyproject("/") in (None, "/pyproject.toml")
    assert resolve_settings(environ={}).disabled == frozenset()
    assert resolve_settings(environ={}).sources["disabled"] == "default"


def test_a_pyproject_named_by_the_manager_is_used_instead_of_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject(tmp_path / "cwd", '[tool.tocsin]\ndisabled = ["nearby"]\n')
    named = pyproject(tmp_path / "elsewhere", '[tool.tocsin]\ndisabled = ["named"]\n')
    monkeypatch.chdir(tmp_path / "cwd")
    for variable in ("TOCSIN_DISABLED_PLUGINS", "TOCSIN_PLUGINS"):
        monkeypatch.delenv(variable, raising=False)
    assert PluginManager("tocsintest.none").settings().disabled == {"nearby"}
    settings = PluginManager("tocsintest.none", pyproject=str(named)).settings()
    assert settings.disabled == {"named"}
    assert settings.sources["disabled"] == f"[tool.tocsin] in {named}"


def test_wants_and_named_plugins() -> None:
    plain = PluginSettings()
    assert plain.wants("anything")
    assert not PluginSettings(autoload=False).wants("a")
    assert not PluginSettings(disabled=frozenset({"a"})).wants("a")
    allow = PluginSettings(allowed=frozenset({"a", "b"}), disabled=frozenset({"b"}))
    assert [allow.wants(n) for n in "abc"] == [True, False, False]
    named = PluginSettings(
        disabled=frozenset({"d"}),
        allowed=frozenset({"b", "a"}),
        sources={"disabled": "here", "allowed": "there"},
    ).named_plugins()
    assert named == [("d", "here"), ("a", "there"), ("b", "there")]


# -- end to end, in fresh interpreters ---------------------------------------------------------

LOAD = """
import tt_host
pm = PluginManager(GROUP{options})
out["loaded"] = pm.load()
out["listed"] = list(pm)
out["enabled"] = [n for n in pm if pm.is_enabled(n)]
out["never_imported"] = [n for n in pm if not pm[n].loaded and pm[n].error is None]
out["ping"] = fired(tt_host.ping)
out["modules_before_enable"] = imported()
{then}
"""


def load(scenario: Any, options: str = "", then: str = "", **kwargs: Any) -> dict[str, Any]:
    return scenario(LOAD.format(options=options, then=textwrap.dedent(then)), **kwargs)


def test_autoload_off_imports_nothing_but_register_and_enable_still_work(scenario: Any) -> None:
    result = load(
        scenario,
        then="""
        class ByHand:
            @tocsin.receiver(tt_host.ping)
            def on_ping(self, sender, **kwargs):
                return "by-hand"

        pm.register(ByHand(), name="by-hand")
        out["after_register"] = fired(tt_host.ping)
        pm.enable("alpha")
        out["after_enable"] = fired(tt_host.ping)
        """,
        env={"TOCSIN_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert result["loaded"] == []
    assert result["listed"] == ALL_NAMES
    assert result["enabled"] == []
    assert result["never_imported"] == ALL_NAMES
    assert result["modules_before_enable"] == []
    assert result["ping"] == []
    assert result["after_register"] == ["by-hand"]
    assert result["after_enable"] == ["by-hand", "alpha-any"]
    assert scenario.imported() == ["import tt_alpha.receivers"]
    assert result["warnings"] == []


def test_disabled_plugins_are_listed_and_never_imported_until_enabled(scenario: Any) -> None:
    result = load(
        scenario,
        then="""
        pm.enable("alpha")
        out["after_enable"] = fired(tt_host.ping)
        out["alpha_after"] = [pm["alpha"].enabled, pm["alpha"].loaded]
        """,
        env={"TOCSIN_DISABLED_PLUGINS": "alpha,beta," + ",".join(BROKEN_NAMES)},
    )
    assert result["loaded"] == ["a-first", "delta", "gamma"]
    assert result["listed"] == ALL_NAMES
    assert sorted(result["never_imported"]) == sorted(["alpha", "beta", *BROKEN_NAMES])
    assert "tt_alpha.receivers" not in result["modules_before_enable"]
    assert "tt_beta" not in result["modules_before_enable"]
    assert "tt_broken" not in result["modules_before_enable"]
    assert result["ping"] == ["a-first"]
    assert result["after_enable"] == ["a-first", "alpha-any"]
    assert result["alpha_after"] == [True, True]
    # The marker file: the broken plugins' code never ran (it would have raised).
    assert scenario.imported() == [
        "import tt_zz_first",
        "import tt_delta",
        "import tt_gamma",
        "import tt_alpha.receivers",
    ]
    assert result["warnings"] == []


def test_an_allow_list_loads_only_the_plugins_it_names(scenario: Any) -> None:
    result = load(scenario, env={"TOCSIN_PLUGINS": "gamma, alpha"})
    assert result["loaded"] == ["alpha", "gamma"]
    assert result["listed"] == ALL_NAMES
    assert sorted(result["never_imported"]) == sorted(set(ALL_NAMES) - {"alpha", "gamma"})
    assert scenario.imported() == ["import tt_alpha.receivers", "import tt_gamma"]
    assert result["modules_before_enable"] == ["tt_alpha", "tt_alpha.receivers", "tt_gamma"]


@pytest.mark.parametrize("where", ["table", "args"])
def test_the_same_settings_in_pyproject_or_as_arguments(
    scenario: Any, tmp_path: Path, where: str
) -> None:
    cases = [
        ("autoload = false", "autoload=False", []),
        (
            f"disabled = {['alpha', *BROKEN_NAMES]!r}",
            f"disabled={['alpha', *BROKEN_NAMES]!r}",
            [n for n in GOOD if n != "alpha"],
        ),
        ('plugins = ["beta", "delta"]', 'allowed=["beta", "delta"]', ["beta", "delta"]),
    ]
    for number, (table, argument, loaded) in enumerate(cases):
        project = tmp_path / f"app{number}"
        pyproject(project, f"[tool.tocsin]\n{table}\n".replace("'", '"'))
        cwd = project / "src"  # found from a subdirectory of the project
        cwd.mkdir()
        if where == "table":
            result = load(scenario, cwd=cwd)
        else:
            result = load(scenario, options=", " + argument, cwd=tmp_path)
        assert result["loaded"] == loaded, (where, table)
        assert result["listed"] == ALL_NAMES
        assert sorted(result["never_imported"]) == sorted(set(ALL_NAMES) - set(loaded))
        assert result["warnings"] == []


def test_precedence_end_to_end(scenario: Any, tmp_path: Path) -> None:
    project = tmp_path / "app"
    names = ", ".join(f'"{n}"' for n in BROKEN_NAMES)
    pyproject(project, f'[tool.tocsin]\nautoload = false\ndisabled = ["alpha", {names}]\n')
    # The table alone: autoload off.
    assert load(scenario, cwd=project)["loaded"] == []
    # Arguments beat the table, setting by setting: autoload back on, the table's
    # disabled list still applies.
    result = load(scenario, options=", autoload=True", cwd=project)
    assert result["loaded"] == ["a-first", "beta", "delta", "gamma"]
    disabled = repr(["beta", *BROKEN_NAMES])
    result = load(scenario, options=f", autoload=True, disabled={disabled}", cwd=project)
    assert result["loaded"] == ["a-first", "alpha", "delta", "gamma"]
    # The environment beats both.
    env = {"TOCSIN_DISABLED_PLUGINS": "gamma," + ",".join(BROKEN_NAMES)}
    result = load(scenario, options=f", autoload=True, disabled={disabled}", cwd=project, env=env)
    assert result["loaded"] == ["a-first", "alpha", "beta", "delta"]
    env = {"TOCSIN_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert load(scenario, options=", autoload=True", cwd=project, env=env)["loaded"] == []
    env = {"TOCSIN_DISABLE_PLUGIN_AUTOLOAD": "0", "TOCSIN_PLUGINS": "delta"}
    assert load(scenario, cwd=project, env=env)["loaded"] == ["delta"]
    assert "tt_broken" not in " ".join(scenario.imported())


@pytest.mark.parametrize("where", ["env-disabled", "env-allowed", "args", "table"])
def test_unknown_plugin_names_are_reported_with_their_source(
    scenario: Any, tmp_path: Path, where: str
) -> None:
    project = tmp_path / "app"
    options, env = "", {}
    if where == "env-disabled":
        env = {"TOCSIN_DISABLED_PLUGINS": "nope,alpha"}
        source = "environment TOCSIN_DISABLED_PLUGINS"
    elif where == "env-allowed":
        env = {"TOCSIN_PLUGINS": "nope,alpha"}
        source = "environment TOCSIN_PLUGINS"
    elif where == "args":
        options = ', allowed=["alpha", "nope"]'
        source = "PluginManager() arguments"
    else:
        path = pyproject(project, '[tool.tocsin]\ndisabled = ["nope", "alpha"]\n')
        source = f"[tool.tocsin] in {path}"
    result = load(
        scenario,
        options=options,
        env=env,
        cwd=project if where == "table" else None,
        then="pm.load()",
    )
    unknown = [w for w in result["warnings"] if "names plugin 'nope'" in w]
    assert unknown == [
        f"{source} names plugin 'nope', which is not installed in group "
        f"'tocsintest.plugins'. Known plugins: {', '.join(ALL_NAMES)}."
    ]
    assert not [w for w in result["warnings"] if "'alpha'" in w and "not installed" in w]
    assert any(log[1] == "DEBUG" and log[2] == unknown[0] for log in result["logs"])
