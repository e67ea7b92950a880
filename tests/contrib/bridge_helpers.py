"""Shared by test_django.py and test_flask.py: a real plugin distribution, built with
pip into a temporary directory, and a child Python process that has it on its path.

Why child processes: Django's settings and app registry can be set up once per
process, and ``tocsin.plugins`` is process-wide; the bridges under test load plugins
into it.  Each scenario therefore runs in a fresh interpreter, and the pytest process
never configures Django, imports the test plugin, or touches ``tocsin.plugins``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tocsin.testing import pip_install

HERE = Path(__file__).resolve().parent
PLUGIN_SOURCE = HERE / "recorder_plugin"
TIMEOUT = 120

_built: dict[str, Path] = {}


def build_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install ``tocsin-test-recorder`` into a fresh directory and return it.

    The source is copied first, so that the build leaves nothing in the test tree.
    """
    key = str(tmp_path_factory.getbasetemp())
    if key in _built:
        return _built[key]
    if importlib.util.find_spec("setuptools") is None:
        pytest.fail(
            "setuptools must be installed in this environment: the test plugin is built "
            "with pip --no-build-isolation, which uses the environment's own setuptools "
            "(add setuptools>=61 to the test dependencies)."
        )
    root = tmp_path_factory.mktemp("recorder-plugin")
    source = root / "src"
    shutil.copytree(PLUGIN_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    pip_install([source], site)
    assert any(site.glob("tocsin_test_recorder-*.dist-info")), sorted(os.listdir(site))
    _built[key] = site
    return site


@dataclass
class Run:
    """What a child process did: its exit status, output, report and recorded events."""

    returncode: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]]
    report: dict[str, Any] = field(default_factory=dict)

    def phases(self) -> dict[str, list[dict[str, Any]]]:
        """The recorded events, split at the scenario's phase markers."""
        split: dict[str, list[dict[str, Any]]] = {"": []}
        current = ""
        for event in self.events:
            if "phase" in event:
                current = event["phase"]
                split[current] = []
            else:
                split[current].append(event)
        return split

    def received(self, signal: str, by: str = "test-recorder") -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("signal") == signal and e.get("by") == by]

    def imported(self) -> set[str]:
        return {e["imported"] for e in self.events if "imported" in e}


def run_child(
    script: Path,
    args: list[str],
    *,
    workdir: Path,
    site: Path,
    pythonpath: list[Path],
    env: dict[str, str],
) -> Run:
    """Run ``python script args`` with *site* and *pythonpath* on its path.

    The child gets a clean tocsin environment (no inherited ``TOCSIN_*`` switches), its
    own discovery cache, and ``TOCSIN_TEST_RECORD`` naming the events file.
    """
    record = workdir / "events.jsonl"
    record.unlink(missing_ok=True)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    child_env.pop("DJANGO_SETTINGS_MODULE", None)
    child_env.update(
        PYTHONPATH=os.pathsep.join(str(p) for p in [site, *pythonpath]),
        PYTHONDONTWRITEBYTECODE="1",
        TOCSIN_CACHE_DIR=str(workdir / "tocsin-cache"),
        TOCSIN_TEST_RECORD=str(record),
        TOCSIN_AUDIT_DB=str(workdir / "audit.sqlite3"),
    )
    child_env.update(env)
    completed = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=workdir,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    events = []
    if record.exists():
        events = [json.loads(line) for line in record.read_text("utf-8").splitlines()]
    report: dict[str, Any] = {}
    lines = completed.stdout.strip().splitlines()
    if completed.returncode == 0 and lines:
        report = json.loads(lines[-1])
    return Run(completed.returncode, completed.stdout, completed.stderr, events, report)
