"""How a plugin that goes wrong is reported (issue 13, "what a new user stumbled on").

Real plugin distributions, built and installed by pip (the ``tocsin_plugin_dist``
fixture of tocsin's pytest plugin, or :func:`tocsin.testing.install_plugin_distribution`
for a fresh interpreter).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tocsin import PluginLoadError, PluginManager, TocsinPluginWarning
from tocsin.testing import PluginDistribution, install_plugin_distribution

# -- an entry point naming a class --------------------------------------------------------

ACME = """
from tocsin import Signal, receiver

ping = Signal(name="acme.ping")


class AcmePlugin:
    @receiver(ping)
    def on_ping(self, sender, **kwargs):
        return "pong"


plugin = AcmePlugin()
"""


def test_an_entry_point_naming_a_class_says_to_name_an_instance(
    tocsin_plugin_dist: Callable[..., PluginDistribution], tocsin_plugin_manager: PluginManager
) -> None:
    dist = tocsin_plugin_dist(ACME, name="acme", attribute="AcmePlugin")
    with pytest.warns(TocsinPluginWarning) as caught:
        assert tocsin_plugin_manager.load() == []
    [message] = [str(w.message) for w in caught]
    assert message.startswith(
        f"Plugin 'acme' from {dist.distribution} is a class where an instance is expected: "
        f"TypeError: {dist.module}:AcmePlugin is a class, and its receivers (on_ping) are "
        f"methods, which need an instance: registering the class connects none of them. "
        f'Point the entry point at an instance instead, e.g. acme = "{dist.module}:plugin" '
        f"with plugin = AcmePlugin() in {dist.module}."
    )
    info = tocsin_plugin_manager["acme"]
    assert (info.enabled, info.loaded, type(info.error)) == (False, False, TypeError)
    # Rolled back: nothing of it connected, and its module forgotten, so that enable()
    # imports it afresh once fixed.
    assert dist.module not in sys.modules


def test_the_instance_the_message_suggests_works(
    tocsin_plugin_dist: Callable[..., PluginDistribution], tocsin_plugin_manager: PluginManager
) -> None:
    dist = tocsin_plugin_dist(ACME, name="acme", attribute="plugin")
    assert tocsin_plugin_manager.load() == ["acme"]
    ping = sys.modules[dist.module].ping
    assert [response for _, response in ping.send(None)] == ["pong"]


def test_a_class_with_static_receivers_is_still_a_plugin(
    tocsin_plugin_dist: Callable[..., PluginDistribution], tocsin_plugin_manager: PluginManager
) -> None:
    dist = tocsin_plugin_dist(
        """
        from tocsin import Signal, receiver

        ping = Signal(name="static.ping")


        class Static:
            @staticmethod
            @receiver(ping)
            def on_ping(sender, **kwargs):
                return "static"
        """,
        name="static",
        attribute="Static",
    )
    assert tocsin_plugin_manager.load() == ["static"]
    ping = sys.modules[dist.module].ping
    assert [response for _, response in ping.send(None)] == ["static"]


def test_registering_a_class_by_hand_says_to_register_an_instance(
    tocsin_plugin_dist: Callable[..., PluginDistribution], tocsin_plugin_manager: PluginManager
) -> None:
    dist = tocsin_plugin_dist(ACME, name="acme", attribute="plugin")
    module = __import__(dist.module)
    with pytest.raises(PluginLoadError, match=r"e\.g\. register\(AcmePlugin\(\)\)") as caught:
        tocsin_plugin_manager.register(module.AcmePlugin, name="by-hand")
    assert "Nothing of it is connected." in str(caught.value)
    assert "by-hand" not in tocsin_plugin_manager
    assert module.ping.send(None) == []


# -- a broken plugin is reported once ------------------------------------------------------

BROKEN = """
import json

raise RuntimeError("no database configured")
"""


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> PluginDistribution:
    return install_plugin_distribution(
        tmp_path_factory.mktemp("broken"),
        BROKEN,
        name="broken",
        group="tocsin.test_reporting",
        module="tocsin_reporting_broken",
    )


def run(dist: PluginDistribution, tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOCSIN_", "PYTHON"))}
    env.update(PYTHONPATH=str(dist.path), TOCSIN_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "setup",
    [
        "",
        "import logging; logging.basicConfig(level=logging.INFO)",
        # Warnings routed to logging, as an application that wants them in its logs does.
        "import logging; logging.basicConfig(); logging.captureWarnings(True)",
    ],
    ids=["no-logging-config", "basicConfig-INFO", "captureWarnings"],
)
def test_a_broken_plugin_is_reported_once_on_stderr(
    broken_site: PluginDistribution, tmp_path: Path, setup: str
) -> None:
    result = run(
        broken_site,
        tmp_path,
        f"{setup}\nimport tocsin\npm = tocsin.PluginManager('tocsin.test_reporting')\n"
        "pm.load()\nprint(type(pm['broken'].error).__name__)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "RuntimeError\n"
    assert result.stderr.count("no database configured") == 1, result.stderr
    assert "TocsinPluginWarning: Plugin 'broken' from " in result.stderr
    # Where it failed, rather than a traceback.
    source = broken_site.path / f"{broken_site.module}.py"
    assert f"(at {source}:3)" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_traceback_is_in_the_debug_log(broken_site: PluginDistribution, tmp_path: Path) -> None:
    result = run(
        broken_site,
        tmp_path,
        "import logging; logging.basicConfig(level=logging.DEBUG)\n"
        "import warnings; warnings.simplefilter('ignore')\n"
        "import tocsin\ntocsin.PluginManager('tocsin.test_reporting').load()",
    )
    assert result.returncode == 0, result.stderr
    assert "DEBUG:tocsin.plugins:Plugin 'broken' from " in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.count("RuntimeError: no database configured\n") == 1


def test_strict_mode_reports_by_the_error_alone(
    broken_site: PluginDistribution, tmp_path: Path
) -> None:
    result = run(
        broken_site,
        tmp_path,
        "import tocsin\ntocsin.PluginManager('tocsin.test_reporting', strict=True).load()",
    )
    assert result.returncode == 1
    assert "TocsinPluginWarning" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tocsin.PluginLoadError: Plugin 'broken' from ")
    assert "strict mode is on (PluginManager() arguments)" in last
    assert "unaffected" not in last


def test_a_syntax_error_is_located_at_its_line(
    tocsin_plugin_dist: Callable[..., PluginDistribution], tocsin_plugin_manager: PluginManager
) -> None:
    dist = tocsin_plugin_dist("VALUE = 1\n\ndef broken(:\n    pass\n", name="typo")
    with pytest.warns(TocsinPluginWarning) as caught:
        tocsin_plugin_manager.load()
    [message] = [str(w.message) for w in caught]
    assert ": SyntaxError: " in message
    assert f"(at {dist.path / (dist.module + '.py')}:3)" in message
