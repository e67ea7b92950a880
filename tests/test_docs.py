"""The documentation's moving parts: bench/chart.py, the benchmarks page hook, the
griffe extension for Sphinx cross-reference roles, and the catalogue page's coverage of
the catalogue.  (`make docs` builds the site itself, with
`mkdocs build --strict`.)"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tocsin import signals as catalogue

ROOT = Path(__file__).resolve().parent.parent


def load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chart() -> types.ModuleType:
    return load(ROOT / "bench" / "chart.py", "tocsin_test_bench_chart")


@pytest.fixture(scope="module")
def hook() -> types.ModuleType:
    return load(ROOT / "docs" / "_hooks" / "benchmarks.py", "tocsin_test_docs_hook")


ENVIRONMENT = {"python": "3.11.7", "implementation": "CPython", "cpu_count": 2, "when": "now"}

CORE: dict[str, Any] = {
    "environment": ENVIRONMENT,
    "columns": {"tocsin": "tocsin", "django": "django", "blinker": "blinker"},
    "send": [
        {
            "label": "1 receiver",
            "results": {
                "tocsin": {"factor": 1.1},
                "django": {"factor": 3.2},
                "blinker": {"factor": 3.4},
            },
        },
        {"label": "0 receivers", "results": {"tocsin": {"factor": 0.97}}},
    ],
    "connect_disconnect": {
        "any": {
            "label": "sender=None",
            "results": {
                "tocsin": {"sizes": {"1000": {"per_op_us": 2.1}, "20000": {"per_op_us": 2.3}}},
                "django": {"sizes": {"1000": {"per_op_us": 66.9}, "20000": {"per_op_us": 301}}},
            },
        }
    },
}

SQLALCHEMY = {
    "environment": ENVIRONMENT,
    "rows": 2000,
    "results": {
        "insert": {"best_us_per_row": {"unwired": 56.4, "wired": 58.8, "wired + receivers": 76}},
        "delete": {"best_us_per_row": {"unwired": 15.7, "wired": 16.3, "wired + receivers": 25}},
    },
}


def write_results(directory: Path, **files: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        text = data if isinstance(data, str) else json.dumps(data)
        (directory / f"{name}.json").write_text(text, encoding="utf-8")
    return directory


def test_no_results_gives_no_charts_and_a_note_per_benchmark(
    chart: types.ModuleType, tmp_path: Path
) -> None:
    charts, notes = chart.build(tmp_path)
    assert charts == []
    assert [note.split(":")[0] for note in notes] == list(chart.CHARTERS)
    assert "no results yet (bench/results/core.json)" in notes[0]


def test_results_are_charted_as_well_formed_svg(chart: types.ModuleType, tmp_path: Path) -> None:
    results = write_results(tmp_path / "results", core=CORE, sqlalchemy=SQLALCHEMY)
    charts, notes = chart.build(results)
    assert [c.file for c in charts] == ["core-send.svg", "core-connect.svg", "sqlalchemy.svg"]
    assert len(notes) == len(chart.CHARTERS) - 2
    for item in charts:
        root = ET.fromstring(item.svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert "CPython 3.11.7, 2 CPUs, measured now" in item.caption
    send = charts[0].svg
    for label in ("1 receiver", "0 receivers", "tocsin", "django", "blinker", "3.2"):
        assert f">{label}<" in send
    assert "hand-written loop" in send
    assert "(log scale)" in send


def test_a_results_file_of_unknown_shape_is_skipped_with_a_note(
    chart: types.ModuleType, tmp_path: Path
) -> None:
    results = write_results(tmp_path, core={"send": "?"}, startup="{not json")
    charts, notes = chart.build(results)
    assert charts == []
    assert any(note.startswith("core: core.json could not be charted (") for note in notes)
    assert any(note.startswith("startup: startup.json could not be charted (") for note in notes)


def test_write_replaces_only_what_changed_and_removes_stale_charts(
    chart: types.ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.svg").write_text("<svg/>", encoding="utf-8")
    (out / "index.md").write_text("# page", encoding="utf-8")
    charts, notes = chart.build(write_results(tmp_path / "results", sqlalchemy=SQLALCHEMY))
    changed = chart.write(charts, notes, out)
    assert sorted(p.name for p in changed) == ["charts.json", "old.svg", "sqlalchemy.svg"]
    assert sorted(p.name for p in out.iterdir()) == ["charts.json", "index.md", "sqlalchemy.svg"]
    assert chart.write(charts, notes, out) == []  # nothing changed: nothing rewritten
    index = json.loads((out / "charts.json").read_text(encoding="utf-8"))
    assert [c["file"] for c in index["charts"]] == ["sqlalchemy.svg"]


def test_the_page_shows_the_charts_or_says_how_to_make_them(
    hook: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = types.SimpleNamespace(file=types.SimpleNamespace(src_uri="benchmarks/index.md"))
    other = types.SimpleNamespace(file=types.SimpleNamespace(src_uri="index.md"))
    docs = tmp_path / "docs"
    markdown = f"# Benchmarks\n\n{hook.PLACEHOLDER}\n"

    monkeypatch.setenv("TOCSIN_BENCH_RESULTS", str(tmp_path / "none"))
    hook.on_pre_build({"docs_dir": str(docs)})
    empty = hook.on_page_markdown(markdown, page=page)
    assert '!!! note "No benchmark results yet"' in empty
    assert "Run `make bench`" in empty
    assert hook.on_page_markdown(markdown, page=other) == markdown

    monkeypatch.setenv("TOCSIN_BENCH_RESULTS", str(write_results(tmp_path / "r", core=CORE)))
    hook.on_pre_build({"docs_dir": str(docs)})
    full = hook.on_page_markdown(markdown, page=page)
    assert "![Send overhead against a hand-written loop](core-send.svg)" in full
    assert "## Not charted" in full
    assert (docs / "benchmarks" / "core-send.svg").is_file()


def test_the_catalogue_page_lists_every_signal_and_its_arguments() -> None:
    text = (ROOT / "docs" / "catalogue.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in text.splitlines()
        if line.startswith("| `")
    }
    for name in catalogue.__all__:
        signal = getattr(catalogue, name)
        assert name in rows, f"{name} is missing from docs/catalogue.md"
        for argument in signal.providing_args:
            assert f"`{argument}`" in rows[name], f"{name}'s {argument} is not listed"


def test_every_docs_page_is_in_the_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(
        str(path.relative_to(ROOT / "docs"))
        for path in (ROOT / "docs").rglob("*.md")
        if "_hooks" not in path.parts
    )
    missing = [page for page in pages if f": {page}" not in config]
    assert not missing, f"pages missing from mkdocs.yml's nav: {missing}"


@pytest.fixture(scope="module")
def xrefs() -> types.ModuleType:
    # griffe comes with the docs tools (make test has them; make test-pythons does not).
    pytest.importorskip("griffe", reason="the docs extra is not installed")
    return load(ROOT / "docs" / "_hooks" / "sphinx_xrefs.py", "tocsin_test_docs_xrefs")


def test_sphinx_roles_become_mkdocstrings_cross_references(
    xrefs: types.ModuleType, tmp_path: Path
) -> None:
    import griffe

    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from pkg._impl import Thing, helper\n__all__ = ['Thing', 'helper']\n", encoding="utf-8"
    )
    (package / "_impl.py").write_text(
        "class Thing:\n"
        '    """See :meth:`run`, :class:`~pkg.Thing`, :py:func:`helper` and\n'
        '    :class:`~sqlalchemy.orm.Session`; ``:class:`` alone stays."""\n'
        "    def run(self):\n"
        '        """Calls :func:`helper` and :meth:`Thing.run`."""\n'
        "def helper():\n"
        '    """Returns a :class:`Thing`."""\n',
        encoding="utf-8",
    )
    extensions = griffe.load_extensions(xrefs.SphinxCrossReferences)
    loaded = griffe.load("pkg", search_paths=[tmp_path], extensions=extensions)

    def ref(path: str, title: str) -> str:
        return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'

    thing = loaded["_impl.Thing"].docstring.value
    assert thing == (
        f"See {ref('pkg._impl.Thing.run', 'run')}, {ref('pkg.Thing', 'Thing')}, "
        f"{ref('pkg._impl.helper', 'helper')} and\n"
        f"{ref('sqlalchemy.orm.Session', 'Session')}; ``:class:`` alone stays."
    )
    run = loaded["_impl.Thing.run"].docstring.value
    helper_ref, run_ref = ref("pkg._impl.helper", "helper"), ref("pkg._impl.Thing.run", "Thing.run")
    assert run == f"Calls {helper_ref} and {run_ref}."
    helper = loaded["_impl.helper"].docstring.value
    assert helper == f"Returns a {ref('pkg._impl.Thing', 'Thing')}."
