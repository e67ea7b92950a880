"""The `tocsin` command, run as a real subprocess over real plugin distributions.

Each test writes small projects (a pyproject.toml and their modules) and has pip build
and install them into a folder of its own, which the command gets on its path.  The
plugins are in a group of their own (:data:`GROUP`), so whatever else is installed in
the interpreter running the tests (the demo's plugins, say) stays out of the picture.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import tocsin
from tocsin.testing import pip_install

GROUP = "tocsin.test_cli"
ROOT = Path(__file__).resolve().parent.parent


class Site:
    """Projects to build, and the folder pip installs them into (``.path``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "site"
        self.path.mkdir(parents=True, exist_ok=True)
        self.projects: list[Path] = []

    def add(
        self,
        dist: str,
        version: str,
        entry_points: Mapping[str, str] | None = None,
        modules: Mapping[str, str] | None = None,
        *,
        groups: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Site:
        """A project declaring *entry_points* in GROUP (and *groups*: group -> points),
        with top-level *modules* (name -> source)."""
        project = self.root / "src" / dist
        project.mkdir(parents=True)
        tables = {GROUP: dict(entry_points or {}), **(groups or {})}
        text = textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "{version}"

            [tool.setuptools]
            py-modules = {json.dumps(sorted(modules or {}))}
            """
        )
        for group, points in tables.items():
            if points:
                text += f'\n[project.entry-points."{group}"]\n'
                text += "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in points.items())
        (project / "pyproject.toml").write_text(text, encoding="utf-8")
        for module, source in (modules or {}).items():
            (project / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        self.projects.append(project)
        return self

    def build(self) -> Path:
        pip_install(self.projects, self.path)
        self.projects = []
        return self.path


def run(
    site: Path,
    tmp_path: Path,
    *args: str,
    group: str | None = GROUP,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    environ.update(
        PYTHONPATH=str(site), TOCSIN_CACHE_DIR=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1"
    )
    environ.update(env or {})
    options = ["--group", group] if group else []
    return subprocess.run(
        [sys.executable, "-m", "tocsin", *options, *args],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def doctor(site: Path, tmp_path: Path, *args: str, **options: Any) -> list[dict[str, Any]]:
    result = run(site, tmp_path, *args, "doctor", "--json", **options)
    assert "Traceback" not in result.stderr, result.stderr
    problems: list[dict[str, Any]] = json.loads(result.stdout)["doctor"]
    assert result.returncode == (1 if problems else 0), result.stdout
    return problems


HEALTHY = """
    from tocsin import receiver
    from tocsin.signals import user_logged_in

    @receiver(user_logged_in, dispatch_uid="audit-login")
    def audit_login(sender, user, request, **kwargs):
        return user
"""

BROKEN = """\
import json

raise RuntimeError("no database configured")
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return (
        Site(tmp_path / "dists")
        .add("acme-audit", "2.1", {"acme-audit": "acme_audit"}, {"acme_audit": HEALTHY})
        .build()
    )


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
            "where": None,
            "receivers": 1,
        }
    ]


def test_plugins_shows_a_disabled_plugin_as_not_loaded(site: Path, tmp_path: Path) -> None:
    result = run(site, tmp_path, "plugins", "--json", env={"TOCSIN_DISABLED_PLUGINS": "acme-audit"})
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["plugins"]
    assert (row["enabled"], row["loaded"], row["receivers"]) == (False, False, 0)


def test_plugins_exits_1_and_shows_where_a_broken_plugin_failed(tmp_path: Path) -> None:
    site = (
        Site(tmp_path / "dists")
        .add("acme-audit", "2.1", {"acme-audit": "acme_audit"}, {"acme_audit": HEALTHY})
        .add("broken-plugin", "0.1", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
        .build()
    )
    source = site / "broken_plugin.py"
    text = run(site, tmp_path, "plugins")
    assert text.returncode == 1, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert lines[3].split()[:6] == ["broken", "broken-plugin", "0.1", "no", "no", "0"]
    assert lines[3].endswith("RuntimeError: no database configured")
    assert lines[-3:] == [
        "broken plugins:",
        "  broken: RuntimeError: no database configured",
        f"      at {source}:3",
    ]
    assert "Traceback" not in text.stderr
    assert "no database configured" not in text.stderr  # shown once, on stdout

    result = run(site, tmp_path, "plugins", "--json")
    assert result.returncode == 1
    rows = {row["name"]: row for row in json.loads(result.stdout)["plugins"]}
    assert rows["broken"]["error"] == "RuntimeError: no database configured"
    assert rows["broken"]["where"] == {"file": str(source), "line": 3}
    assert rows["acme-audit"]["error"] is None

    # Strict mode makes load() raise; the command shows everything all the same.
    strict = run(site, tmp_path, "plugins", env={"TOCSIN_STRICT_PLUGINS": "1"})
    assert strict.returncode == 1
    assert strict.stdout == text.stdout
    assert "Traceback" not in strict.stderr


def test_signals_names_the_plugin_that_owns_each_receiver(site: Path, tmp_path: Path) -> None:
    text = run(site, tmp_path, "signals")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    start = lines.index("tocsin.signals.auth.user_logged_in(request, user)")
    assert lines[start + 1] == "    -> audit_login  [plugin acme-audit]  dispatch_uid='audit-login'"

    data = json.loads(run(site, tmp_path, "signals", "--json").stdout)["signals"]
    by_name = {item["signal"]: item for item in data}
    assert by_name["tocsin.signals.auth.user_logged_in"] == {
        "signal": "tocsin.signals.auth.user_logged_in",
        "path": "tocsin.signals:user_logged_in",
        "arguments": ["request", "user"],
        "receivers": [
            {
                "receiver": "audit_login",
                "plugin": "acme-audit",
                "sender": None,
                "dispatch_uid": "audit-login",
                "priority": 0,
                "async": False,
            }
        ],
    }
    assert by_name["tocsin.signals.db.connection_created"]["receivers"] == []


SHOP = """
    from tocsin import Signal

    order_paid = Signal(providing_args=["order"], name="shop.order_paid")
    refunded = Signal()  # unnamed: shown by its import path


    class Shop:
        pass


    class Events:
        shipped = Signal()  # named Events.shipped by its class
"""

SHOP_EXTRA = """
    from tocsin import Signal

    cancelled = Signal(name="shop.cancelled")
"""

SHOP_PLUGIN = """
    from tocsin import receiver

    import shop
    from shop import Events, Shop, order_paid, refunded


    @receiver(order_paid, sender=Shop, dispatch_uid=("acme", 1), priority=5)
    def first(sender, order, **kwargs):
        return "first"


    @receiver(order_paid)
    def second(sender, **kwargs):
        return "second"


    @receiver(refunded, sender="bank")
    def on_refund(sender, **kwargs):
        return "refund"


    @receiver(Events.shipped, sender=7)
    async def on_shipped(sender, **kwargs):
        return "shipped"
"""


@pytest.fixture
def shop_site(tmp_path: Path) -> Path:
    return (
        Site(tmp_path / "dists")
        .add("shop-app", "1.0", None, {"shop": SHOP, "shopextra": SHOP_EXTRA})
        .add("acme-shop", "1.0", {"acme-shop": "acme_shop"}, {"acme_shop": SHOP_PLUGIN})
        .build()
    )


def test_signals_shows_senders_uids_priorities_and_the_applications_signals(
    shop_site: Path, tmp_path: Path
) -> None:
    text = run(shop_site, tmp_path, "signals")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    start = lines.index("shop.order_paid(order)")
    assert lines[start + 1 : start + 3] == [
        "    -> first  [plugin acme-shop]  sender=shop:Shop  dispatch_uid=('acme', 1)  priority=5",
        "    -> second  [plugin acme-shop]",
    ]
    start = lines.index("shop:refunded()")
    assert lines[start + 1] == "    -> on_refund  [plugin acme-shop]  sender='bank'"
    start = lines.index("Events.shipped()")
    assert lines[start + 1] == "    -> on_shipped  [plugin acme-shop]  sender=7  async"
    assert "shop.cancelled()" not in lines  # not imported by anything

    data = json.loads(run(shop_site, tmp_path, "signals", "--json").stdout)["signals"]
    by_name = {item["signal"]: item for item in data}
    assert by_name["shop.order_paid"]["path"] == "shop:order_paid"
    assert by_name["shop.order_paid"]["receivers"][0] == {
        "receiver": "first",
        "plugin": "acme-shop",
        "sender": "shop:Shop",
        "dispatch_uid": ["acme", 1],
        "priority": 5,
        "async": False,
    }
    assert by_name["Events.shipped"]["path"] == "shop:Events.shipped"
    assert by_name["shop:refunded"]["receivers"][0]["sender"] == "bank"

    # The application's own modules, named with --import (from the working folder too).
    (tmp_path / "localsignals.py").write_text(
        "from tocsin import Signal\n\nlocal = Signal(name='app.local')\n", encoding="utf-8"
    )
    text = run(shop_site, tmp_path, "--import", "shopextra", "--import", "localsignals", "signals")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[lines.index("shop.cancelled()") + 1] == "    (no receivers)"
    assert "app.local()" in lines

    failed = run(shop_site, tmp_path, "--import", "nowhere_to_be_found", "signals")
    assert failed.returncode == 1
    assert "import-error: cannot import 'nowhere_to_be_found' (given with --import): " in (
        failed.stderr
    )
    assert "Traceback" not in failed.stderr


def test_doctor_is_quiet_and_exits_0_when_all_is_well(site: Path, tmp_path: Path) -> None:
    result = run(site, tmp_path, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("No problems found (1 plugins")
    assert doctor(site, tmp_path) == []


def test_doctor_reports_every_kind_of_problem_and_exits_1(tmp_path: Path) -> None:
    site = (
        Site(tmp_path / "dists")
        .add("acme-audit", "2.1", {"acme-audit": "acme_audit"}, {"acme_audit": HEALTHY})
        .add("broken-plugin", "0.1", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
        .add(
            "acme-audit-fork",
            "9.9",
            {"acme-audit": "acme_audit_fork"},
            {"acme_audit_fork": HEALTHY},
        )
        .add(
            "copycat",
            "1.0",
            {"copycat": "copycat"},
            {
                "copycat": """
                from tocsin import receiver
                from tocsin.signals import user_logged_in

                @receiver(user_logged_in, dispatch_uid="audit-login")
                def also_audit(sender, **kwargs):
                    return None
                """
            },
        )
        .add(
            "colourful",
            "1.0",
            {"colourful": "colourful"},
            {
                "colourful": """
                from tocsin import receiver
                from tocsin.signals import post_save

                @receiver(post_save)  # refused where it is made: post_save never sends colour
                def wants_colour(sender, instance, colour, **kwargs):
                    return colour
                """
            },
        )
        .build()
    )
    problems = doctor(site, tmp_path)
    kinds = sorted(p["problem"] for p in problems)
    assert kinds == [
        "broken-plugin",
        "broken-plugin",
        "dispatch-uid-conflict",
        "duplicate-name",
    ]
    broken = {p["plugin"]: p for p in problems if p["problem"] == "broken-plugin"}
    source = site / "broken_plugin.py"
    assert broken["broken"]["message"] == (
        f"plugin 'broken' (broken-plugin) failed: RuntimeError: no database configured "
        f"(at {source}:3)"
    )
    assert broken["broken"]["where"] == {"file": str(source), "line": 3}
    assert "wants_colour requires 'colour', which" in broken["colourful"]["message"]
    by_kind = {p["problem"]: p for p in problems}
    assert by_kind["duplicate-name"]["distributions"] == ["acme-audit", "acme-audit-fork"]
    conflict = by_kind["dispatch-uid-conflict"]
    assert "'audit-login'" in conflict["message"]
    assert "audit_login (plugin acme-audit)" in conflict["message"]
    assert conflict["dispatch_uid"] == "audit-login"  # the value, not its repr

    text = run(site, tmp_path, "doctor")
    assert text.returncode == 1
    assert "broken-plugin: plugin 'broken' (broken-plugin) failed: RuntimeError" in text.stdout
    assert "Traceback" not in text.stderr


def test_doctor_reports_settings_that_name_unknown_plugins(site: Path, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.tocsin]\ndisabled = ["acme-audti"]\n')
    (problem,) = doctor(site, tmp_path)
    assert problem["problem"] == "unknown-plugin-name"
    assert problem["plugin"] == "acme-audti"
    assert problem["source"] == f"[tool.tocsin] in {tmp_path / 'pyproject.toml'}"


# -- configuration errors: a problem and exit 1, never a traceback -----------------------


CONFIG_ERRORS = {
    "bad-switch": (
        {"TOCSIN_DISABLE_PLUGIN_AUTOLOAD": "maybe"},
        None,
        "Environment variable TOCSIN_DISABLE_PLUGIN_AUTOLOAD='maybe' is not a yes/no value",
    ),
    "empty-name": ({"TOCSIN_PLUGINS": "a,,b"}, None, "TOCSIN_PLUGINS='a,,b' has an empty"),
    "unknown-key": (
        {},
        '[tool.tocsin]\ndisable = ["acme-audit"]\n',
        "has unknown keys disable; known keys: autoload, disabled, plugins, state, "
        "state_interval, strict",
    ),
    "malformed": ({}, "[tool.tocsin\nstrict = true\n", "is not valid TOML"),
    "relative-cache": ({"TOCSIN_CACHE_DIR": "cache"}, None, "TOCSIN_CACHE_DIR"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_a_configuration_error_is_a_problem_not_a_traceback(
    site: Path, tmp_path: Path, case: str
) -> None:
    env, table, says = CONFIG_ERRORS[case]
    if table is not None:
        (tmp_path / "pyproject.toml").write_text(table, encoding="utf-8")
    problems = doctor(site, tmp_path, env=env)
    assert [p["problem"] for p in problems] == ["configuration-error"]
    assert says in problems[0]["message"]
    for command in ("plugins", "signals", "doctor"):
        result = run(site, tmp_path, command, env=env)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert says in result.stdout + result.stderr
    result = run(site, tmp_path, "plugins", "--json", env=env)
    assert json.loads(result.stdout)["errors"][0]["problem"] == "configuration-error"


# -- entry points in a group tocsin does not read -----------------------------------------


def test_doctor_reports_entry_points_in_a_group_close_to_tocsins(tmp_path: Path) -> None:
    dists = Site(tmp_path / "dists")
    near = {
        "tocsin.plugin": "tocsin.plugins",
        "tocsin_plugins": "tocsin.plugins",
        "Tocsin.Plugins": "tocsin.plugins",
        "tocsin.receivers": "tocsin.plugins.receivers",
        "tocsin.plugins.receiver": "tocsin.plugins.receivers",
    }
    for number, wrong in enumerate(near):
        module = f"near_miss_{number}"
        dists.add(
            f"near-miss-{number}",
            "1.0",
            None,
            {module: "VALUE = 1\n"},
            groups={wrong: {f"near{number}": module}},
        )
    # Not near: another project's group, and tocsin's own.
    dists.add(
        "far-away",
        "1.0",
        {"ok": "far_away"},
        {"far_away": "VALUE = 1\n"},
        groups={"myapp.plugins": {"far": "far_away"}, "tocsin.plugins": {"far": "far_away"}},
    )
    site = dists.build()
    # A group setuptools will not write, written by hand as another backend might.
    info = site / "hyphen_group-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hyphen-group\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[tocsin-plugins]\nhyphen = far_away\n")

    problems = doctor(site, tmp_path, group=None)  # the default group, tocsin.plugins
    misplaced = {p["group"]: p for p in problems if p["problem"] == "entry-point-group"}
    assert {group: p["meant"] for group, p in misplaced.items()} == {
        **near,
        "tocsin-plugins": "tocsin.plugins",
    }
    problem = misplaced["tocsin_plugins"]
    assert problem["distribution"] == "near-miss-1"
    assert problem["entry_points"] == ["near1 = near_miss_1"]
    assert problem["message"] == (
        "distribution near-miss-1 declares entry points in group 'tocsin_plugins' "
        "(near1 = near_miss_1), which tocsin does not read: did you mean 'tocsin.plugins'? "
        'Rename the table to [project.entry-points."tocsin.plugins"] in its pyproject.toml '
        "and reinstall it"
    )
    # With another group, the names close to that one are what doctor looks for.
    assert [p for p in doctor(site, tmp_path) if p["problem"] == "entry-point-group"] == []


# -- receivers declared in metadata ----------------------------------------------------------

DECLARING = """
    import pathlib

    pathlib.Path(__file__).with_name("declaring-imported").write_text("yes")


    def on_paid(sender, **kwargs):
        return "paid"
"""


def test_doctor_checks_declared_receivers_without_importing_them(tmp_path: Path) -> None:
    receivers = GROUP + ".receivers"
    site = (
        Site(tmp_path / "dists")
        .add("shop-app", "1.0", None, {"shop": SHOP})
        .add(
            "declaring",
            "1.0",
            None,
            {"declaring": DECLARING},
            groups={
                receivers: {
                    "good shop:order_paid sender shop:Shop uid good:paid priority 3": (
                        "declaring:on_paid"
                    ),
                    "typo shop:order_paid": "declaring:on_payd",
                    "nosignal shop:order_pad": "declaring:on_paid",
                    "nosender shop:order_paid sender shop:Shopp": "declaring:on_paid",
                    "unreadable shop:order_paid colour red": "declaring:on_paid",
                    "off shop:order_paid": "declaring:nothing_here",
                }
            },
        )
        .build()
    )
    env = {"TOCSIN_DISABLED_PLUGINS": "off"}
    problems = doctor(site, tmp_path, env=env)
    assert not (site / "declaring-imported").exists()  # the plugin's code never ran
    found = sorted((p["problem"], p["plugin"], p.get("role")) for p in problems)
    assert found == [
        ("unreadable-declaration", "unreadable", None),
        ("unresolved-declaration", "nosender", "sender"),
        ("unresolved-declaration", "nosignal", "signal"),
        ("unresolved-declaration", "off", "receiver"),  # checked though it is disabled
        ("unresolved-declaration", "typo", "receiver"),
    ]
    by_plugin = {p["plugin"]: p for p in problems}
    assert by_plugin["typo"]["message"] == (
        f"plugin 'typo' (declaring) declares the receiver declaring:on_payd: "
        f"{site / 'declaring.py'} defines no 'on_payd' (declared as: typo shop:order_paid = "
        f"declaring:on_payd)"
    )
    assert by_plugin["nosignal"]["message"].startswith(
        "plugin 'nosignal' (declaring) declares the signal shop:order_pad: module 'shop' has "
        "no attribute 'order_pad'"
    )
    assert (
        "after the signal come 'sender X', 'uid U' and 'priority N'"
        in (by_plugin["unreadable"]["message"])
    )

    # The good declaration is listed by `tocsin plugins` and `tocsin signals`, unimported.
    text = run(site, tmp_path, "signals", env=env)
    lines = text.stdout.splitlines()
    assert lines[lines.index("shop.order_paid(order)") + 1] == (
        "    -> <declaring:on_paid, declared by plugin 'good', not imported yet>  "
        "[plugin good]  sender=shop:Shop  dispatch_uid='good:paid'  priority=3"
    )
    assert not (site / "declaring-imported").exists()


def test_doctor_reports_an_unusable_plugin_index(site: Path, tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"
    cache.mkdir()
    cache.chmod(0o777)
    problems = doctor(site, tmp_path, env={"TOCSIN_CACHE_DIR": str(cache)})
    assert [p["problem"] for p in problems] == ["plugin-index"]
    assert problems[0]["message"].startswith(f"Ignoring the plugin index folder {cache}: ")
    assert problems[0]["message"].endswith(f"Run: chmod go-w {cache}")


# -- the command itself ---------------------------------------------------------------------


def test_version_is_the_projects(tmp_path: Path) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - 3.10
        import tomli as tomllib
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    assert tocsin.__version__ == declared
    assert importlib.metadata.version("tocsin") == declared
    result = run(tmp_path, tmp_path, "--version", group=None)
    assert (result.returncode, result.stdout) == (0, f"tocsin {declared}\n")
    script = Path(sys.executable).with_name("tocsin")
    if script.exists():
        shown = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
        assert shown.stdout == f"tocsin {declared}\n"


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, tmp_path, "frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_doctor_import_times_reports_a_hanging_plugin_by_name(tmp_path: Path) -> None:
    site = (
        Site(tmp_path / "dists")
        .add("acme-audit", "2.1", {"acme-audit": "acme_audit"}, {"acme_audit": HEALTHY})
        .add(
            "stuck",
            "0.1",
            {"stuck": "stuck_plugin"},
            {"stuck_plugin": "import time\ntime.sleep(600)\n"},
        )
        .build()
    )
    result = run(site, tmp_path, "doctor", "--json", "--import-times", "3")
    assert result.returncode == 1
    problems = json.loads(result.stdout)["doctor"]
    hung = [p for p in problems if p["problem"] == "plugin-import-failed"]
    assert [p["plugin"] for p in hung] == ["stuck"]
    assert "acme-audit" not in {p.get("plugin") for p in problems}
    text = run(site, tmp_path, "doctor", "--import-times", "3")
    assert "plugin-import-failed: importing plugin 'stuck'" in text.stdout
    assert "import times: acme-audit" in text.stdout


def test_plugins_switches_in_the_shared_state_and_shows_them(site: Path, tmp_path: Path) -> None:
    state = {"TOCSIN_STATE": str(tmp_path / "state.sqlite3")}
    switched = run(
        site, tmp_path, "plugins", "disable", "acme-audit", "--reason", "audit down", env=state
    )
    assert switched.returncode == 0, switched.stderr
    assert switched.stdout == "acme-audit: disabled in the shared plugin state\n"
    listed = json.loads(run(site, tmp_path, "plugins", "--json", env=state).stdout)["plugins"]
    [row] = [r for r in listed if r["name"] == "acme-audit"]
    assert (row["enabled"], row["shared"], row["local_override"]) == (False, False, False)
    history = json.loads(run(site, tmp_path, "plugins", "history", "--json", env=state).stdout)
    [change] = history["history"]
    assert (change["plugin"], change["enabled"], change["reason"]) == (
        "acme-audit",
        False,
        "audit down",
    )
    assert run(site, tmp_path, "plugins", "enable", "acme-audit", env=state).returncode == 0
    listed = json.loads(run(site, tmp_path, "plugins", "--json", env=state).stdout)["plugins"]
    assert [r["enabled"] for r in listed if r["name"] == "acme-audit"] == [True]


def test_plugins_switch_without_a_shared_state_says_how_to_configure_one(
    site: Path, tmp_path: Path
) -> None:
    result = run(site, tmp_path, "plugins", "disable", "acme-audit")
    assert result.returncode == 1
    assert "No shared plugin state is configured: set TOCSIN_STATE" in result.stderr
    missing = run(site, tmp_path, "plugins", "disable")
    assert missing.returncode == 2
    assert "needs the plugin's name" in missing.stderr
