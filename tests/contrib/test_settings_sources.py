"""A ``TOCSIN`` setting from Django's settings or Flask's config is named as such in
messages (issue 13): ``settings.TOCSIN['disabled'] names plugin 'x', which is not
installed``, not ``PluginManager() arguments``.

The real Django project and Flask app of test_django.py and test_flask.py, in child
processes, with the ``tocsin-test-recorder`` distribution built by pip.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("django", reason="tocsin[django] needs Django")
pytest.importorskip("flask", reason="tocsin[flask] needs Flask")

import flask
from bridge_helpers import HERE, build_plugin, run_child

from tocsin import PluginConfigError
from tocsin.contrib.flask import Tocsin


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_plugin(tmp_path_factory)


def django(site: Path, tmp_path: Path, tocsin: object) -> tuple[int, str]:
    run = run_child(
        HERE / "djangoproject" / "scenario.py",
        ["plugins"],
        workdir=tmp_path,
        site=site,
        pythonpath=[HERE / "djangoproject"],
        env={
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
            "TOCSIN_TEST_DB": str(tmp_path / "db.sqlite3"),
            "TOCSIN_TEST_SETTINGS": json.dumps(tocsin),
        },
    )
    return run.returncode, run.stderr


def test_django_settings_name_their_key(site: Path, tmp_path: Path) -> None:
    code, stderr = django(site, tmp_path, {"plugins": ["test-extra"], "disabled": ["test-extar"]})
    assert code == 0, stderr
    assert (
        "settings.TOCSIN['disabled'] names plugin 'test-extar', which is not installed in "
        "group 'tocsin.plugins'." in stderr
    )
    assert "PluginManager() arguments" not in stderr


def test_django_strict_setting_is_named_by_the_error(site: Path, tmp_path: Path) -> None:
    code, stderr = django(site, tmp_path, {"plugins": ["test-broken"], "strict": True})
    assert code != 0
    assert "strict mode is on (settings.TOCSIN['strict'])" in stderr
    assert "TocsinPluginWarning" not in stderr  # the error is the report


def test_flask_config_names_its_key(site: Path, tmp_path: Path) -> None:
    run = run_child(
        HERE / "flaskproject" / "scenario.py",
        ["full", "--without-flask-login"],
        workdir=tmp_path,
        site=site,
        pythonpath=[],
        env={"TOCSIN_TEST_SETTINGS": json.dumps({"plugins": ["test-recorder", "test-recordr"]})},
    )
    # (The scenario turns warnings into errors, so this one stops it.)
    assert re.search(
        r"app\.config\['TOCSIN'\]\['plugins'\] of Flask app '[^']+' names plugin "
        r"'test-recordr', which is not installed",
        run.stderr,
    ), run.stderr


def test_flask_config_errors_put_the_key_after_the_config() -> None:
    app = flask.Flask("shop")
    app.config["TOCSIN"] = {"autoload": "yes"}
    with pytest.raises(PluginConfigError) as caught:
        Tocsin(app)
    assert str(caught.value) == (
        "app.config['TOCSIN']['autoload'] of Flask app 'shop' must be True or False, not 'yes'."
    )
    app.config["TOCSIN"] = ["a"]
    with pytest.raises(PluginConfigError, match=r"^app\.config\['TOCSIN'\] of Flask app 'shop' "):
        Tocsin(app)
