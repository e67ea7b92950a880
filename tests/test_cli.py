"""The `tocsin` command, run as a real subprocess over real installed plugin folders.

The plugins are installed under a group of their own, so whatever else is installed in
the interpreter running the tests (the demo's plugins, say) stays out of the picture.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tocsin

GROUP = "tocsin.test-cli"


def install(
    site: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """Write an installed distribution by hand: a dist-info folder and its modules."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = [f"[{GROUP}]", *(f"{name} = {value}" for name, value in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


def run(site: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "TOCSIN_CACHE_DIR": str(tmp_path / "cache"),
    }
    for variable in ("TOCSIN_DISABLED_PLUGINS", "TOCSIN_PLUGINS", "TOCSIN_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(variable, None)
    return subprocess.run(
        [sys.executable, "-m", "tocsin", "--group", GROUP, *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


HEALTHY = """
    from tocsin import receiver
    from tocsin.signals import user_logged_in

    @receiver(user_logged_in, dispatch_uid="audit-login")
    def audit_login(sender, user, request, **kwargs):
        return user
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    install(path, "acme-audit", "2.1", {"acme-audit": "acme_audit"}, {"acme_audit": HEALTHY})
    return path


def test_plugins_lists_each_plugin_as_a_table_and_as_json(site: Path, tmp_path: Path) -> None:
    text = run(site, tmp_path, "plugins")
    assert text.returncode == 0, text.stderr
    header, rule, row = text.stdout.splitlines()
    assert header.split() == [
        "plugin",
        "distribution",
        "version",
        "enabled",
        "loaded",
        "receivers",
        "error",
    ]
    assert set(rule) <= {"-", " "}
    assert row.split() == ["acme-audit", "acme-audit", "2.1", "yes", "yes", "1"]

    data = json.loads(run(site, tmp_path, "plugins", "--json").stdout)
    assert data["plugins"] == [
        {
            "name": "acme-audit",
            "distribution": "acme-audit",
            "version": "2.1",
            "enabled": True,
            "loaded": True,
            "error": None,
            "receivers": 1,
        }
    ]


def test_plugins_shows_a_disabled_plugin_as_not_loaded(site: Path, tmp_path: Path) -> None:
    env_site = str(site)
    result = subprocess.run(
        [sys.executable, "-m", "tocsin", "--group", GROUP, "plugins", "--json"],
        env={
            **os.environ,
            "PYTHONPATH": env_site,
            "TOCSIN_DISABLED_PLUGINS": "acme-audit",
            "TOCSIN_CACHE_DIR": str(tmp_path / "cache"),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (row,) = json.loads(result.stdout)["plugins"]
    assert (row["enabled"], row["loaded"], row["receivers"]) == (False, False, 0)


def test_signals_names_the_plugin_that_owns_each_receiver(site: Path, tmp_path: Path) -> None:
    text = run(site, tmp_path, "signals")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    start = lines.index("tocsin.signals.auth.user_logged_in(request, user)")
    assert lines[start + 1] == "    -> audit_login  [plugin acme-audit]"

    data = json.loads(run(site, tmp_path, "signals", "--json").stdout)["signals"]
    by_name = {item["signal"]: item for item in data}
    assert by_name["tocsin.signals.auth.user_logged_in"] == {
        "signal": "tocsin.signals.auth.user_logged_in",
        "arguments": ["request", "user"],
        "receivers": [{"receiver": "audit_login", "plugin": "acme-audit"}],
    }
    assert by_name["tocsin.signals.db.connection_created"]["receivers"] == []


def test_doctor_is_quiet_and_exits_0_when_all_is_well(site: Path, tmp_path: Path) -> None:
    result = run(site, tmp_path, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("No problems found (1 plugins")
    assert json.loads(run(site, tmp_path, "doctor", "--json").stdout) == {"doctor": []}


def test_doctor_reports_every_kind_of_problem_and_exits_1(site: Path, tmp_path: Path) -> None:
    install(
        site,
        "broken-plugin",
        "0.1",
        {"broken": "broken_plugin"},
        {"broken_plugin": "raise RuntimeError('no database configured')\n"},
    )
    install(
        site,
        "acme-audit-fork",
        "9.9",
        {"acme-audit": "acme_audit_fork"},
        {"acme_audit_fork": HEALTHY},
    )
    install(
        site,
        "copycat",
        "1.0",
        {"copycat": "copycat"},
        {
            "copycat": """
        from tocsin import receiver
        from tocsin.signals import user_logged_in, post_save

        @receiver(user_logged_in, dispatch_uid="audit-login")
        def also_audit(sender, **kwargs):
            return None

        @receiver(post_save)
        def wants_colour(sender, instance, colour, **kwargs):
            return colour
    """
        },
    )
    result = run(site, tmp_path, "doctor", "--json")
    assert result.returncode == 1
    problems = json.loads(result.stdout)["doctor"]
    kinds = sorted(p["problem"] for p in problems)
    assert kinds == [
        "broken-plugin",
        "dispatch-uid-conflict",
        "duplicate-name",
        "receiver-arguments",
    ]
    by_kind = {p["problem"]: p for p in problems}
    assert "no database configured" in by_kind["broken-plugin"]["message"]
    assert by_kind["duplicate-name"]["distributions"] == ["acme-audit", "acme-audit-fork"]
    assert "'audit-login'" in by_kind["dispatch-uid-conflict"]["message"]
    assert "audit_login (plugin acme-audit)" in by_kind["dispatch-uid-conflict"]["message"]
    assert by_kind["receiver-arguments"]["parameters"] == ["colour"]

    text = run(site, tmp_path, "doctor")
    assert text.returncode == 1
    assert "broken-plugin: plugin 'broken' (broken-plugin) failed: RuntimeError" in text.stdout
    assert "Traceback" not in text.stderr


def test_doctor_reports_settings_that_name_unknown_plugins(site: Path, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.tocsin]\ndisabled = ["acme-audti"]\n')
    result = run(site, tmp_path, "doctor", "--json")
    assert result.returncode == 1
    (problem,) = json.loads(result.stdout)["doctor"]
    assert problem["problem"] == "unknown-plugin-name"
    assert problem["plugin"] == "acme-audti"
    assert problem["source"] == f"[tool.tocsin] in {tmp_path / 'pyproject.toml'}"


def test_version_is_the_projects(tmp_path: Path) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - 3.10
        import tomli as tomllib
    root = Path(__file__).resolve().parent.parent
    declared = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    assert tocsin.__version__ == declared
    assert importlib.metadata.version("tocsin") == declared
    result = subprocess.run(
        [sys.executable, "-m", "tocsin", "--version"], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, f"tocsin {declared}\n")
    script = Path(sys.executable).with_name("tocsin")
    if script.exists():
        shown = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
        assert shown.stdout == f"tocsin {declared}\n"


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, tmp_path, "frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
