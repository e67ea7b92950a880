"""The shared plugin state in Django's database: the model and migration of
``tocsin.contrib.django``, the admin that toggles plugins, and the same tables written
by a process without Django (a real Django project in a child process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import state_harness

pytest.importorskip("django", reason="tocsin[django] needs Django")


def test_the_admin_toggles_a_plugin_and_the_audit_trail_says_who(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    site = state_harness.build_site(tmp_path_factory.mktemp("django-plugins"), "tocsin.plugins")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    environment.update(
        PYTHONPATH=os.pathsep.join([str(site), str(state_harness.HERE)]),
        STATE_TEST_DB=str(tmp_path / "db.sqlite3"),
        STATE_TEST_OUT=str(tmp_path),
        TOCSIN_NO_CACHE="1",
        TOCSIN_STATE_INTERVAL="0.2",
    )
    child = subprocess.run(
        [sys.executable, str(state_harness.HERE / "django_scenario.py")],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout.splitlines()[-1])
    assert result["backend"] == "django database 'default'"
    assert result["at_start"] is True
    assert result["add"] == 302
    assert result["after_admin"] is False
    assert result["after_other"] is True
    assert result["action"] == 302
    assert result["after_action"] is False
    assert result["audit_page"] == [200, True]
    assert result["history"] == [
        ["noisy", False, "alice (django admin)", "disabled in the admin"],
        ["noisy", True, "bob", "back on"],
        ["noisy", False, "alice (django admin)", "too loud"],
    ]
