"""Every Python block of README.md and docs/ runs as written (issue 16).

Each ```` ```python ```` block is run verbatim in a fresh interpreter, in an empty
temporary directory, with this repository's example plugins (``plugins/``) installed
beside tocsin, as after ``pip install . ./plugins/*``.  It must exit with status 0.

Two comment lines in the Markdown, invisible on the rendered page, say more:

``<!-- fragment -->`` (or ``<!-- fragment: why -->``) on the line before a block
    marks it as a fragment: an excerpt not meant to run on its own (it names the
    reader's own modules, needs a server, or continues an earlier block).  It is not
    run.

``<!-- pytest -->`` on the line before a block says that the block is a test module:
    it is run with pytest (tocsin's pytest plugin and its fixtures included), and its
    tests must pass.

``<!-- output -->`` on the line before a ```` ```text ```` block makes that block the
    expected output of the nearest runnable Python block above it: what the block
    prints must match it, line by line (trailing spaces aside; ``...`` matches
    anything, as in doctest with ELLIPSIS).
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tocsin.testing import pip_install

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TIMEOUT = 120

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
FRAGMENT = re.compile(r"^<!--\s*fragment(?::[^>]*)?\s*-->$")
OUTPUT = re.compile(r"^<!--\s*output\s*-->$")
PYTEST = re.compile(r"^<!--\s*pytest\s*-->$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    info: str
    code: str
    marker: str  # the comment line right before the fence, or ""
    output: Block | None = None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_python(self) -> bool:
        return self.info.split()[:1] == ["python"]

    @property
    def is_fragment(self) -> bool:
        return bool(FRAGMENT.match(self.marker))

    @property
    def is_test_module(self) -> bool:
        return bool(PYTEST.match(self.marker))


def fenced_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order, with their markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            closing = FENCE.match(lines[end])
            if closing and closing["fence"].startswith(fence) and not closing["info"]:
                break
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else lines[end])
            end += 1
        before = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        code = "\n".join(body) + "\n"
        blocks.append(Block(page, index + 1, opening["info"], code, before))
        index = end + 1
    return blocks


def python_blocks() -> list[Block]:
    """Every Python block of the pages, each with its expected output if one is shown."""
    found: list[Block] = []
    for page in PAGES:
        runnable: Block | None = None
        for block in fenced_blocks(page):
            if block.is_python:
                found.append(block)
                runnable = None if block.is_fragment else block
            elif OUTPUT.match(block.marker):
                if runnable is None or runnable.output is not None:
                    raise AssertionError(
                        f"{block.name}: an <!-- output --> block must follow a runnable "
                        "Python block (one output each)"
                    )
                runnable.output = block
    return found


BLOCKS = python_blocks()
RUNNABLE = [block for block in BLOCKS if not block.is_fragment]


@pytest.fixture(scope="session")
def example_plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository's example plugins, built and installed by pip into a folder."""
    site = tmp_path_factory.mktemp("example-plugins")
    pip_install(sorted((ROOT / "plugins").iterdir()), site, what="the example plugins")
    return site


def matches(expected: str, printed: str) -> bool:
    want = "\n".join(line.rstrip() for line in expected.strip("\n").splitlines()) + "\n"
    got = "\n".join(line.rstrip() for line in printed.strip("\n").splitlines()) + "\n"
    return doctest.OutputChecker().check_output(want, got, doctest.ELLIPSIS)


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.name for block in RUNNABLE])
def test_block_runs_as_written(block: Block, example_plugins: Path, tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    environment.update(
        PYTHONPATH=str(example_plugins),
        PYTHONDONTWRITEBYTECODE="1",
        TOCSIN_CACHE_DIR=str(tmp_path / "tocsin-cache"),
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    script = workdir / ("test_block.py" if block.is_test_module else "block.py")
    script.write_text(block.code, encoding="utf-8")
    command = [sys.executable, script.name]
    if block.is_test_module:
        command[1:1] = ["-m", "pytest", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        command,
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"{block.name} failed (exit status {result.returncode}):\n"
        f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )
    if block.output is not None:
        assert matches(block.output.code, result.stdout), (
            f"{block.name} printed\n{result.stdout}\nbut {block.output.name} shows\n"
            f"{block.output.code}"
        )


def test_the_headline_example_runs_and_is_the_same_in_readme_and_docs_index() -> None:
    readme = next(b for b in BLOCKS if b.page.name == "README.md")
    index = next(b for b in BLOCKS if b.page == ROOT / "docs" / "index.md")
    for headline in (readme, index):
        assert not headline.is_fragment, f"{headline.name}: the headline must run"
        assert headline.output is not None, f"{headline.name}: show what it prints"
    assert readme.code == index.code
    assert readme.output is not None
    assert index.output is not None
    assert readme.output.code == index.output.code


def test_blocks_are_found_and_markers_are_understood(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python\nprint(1)\n```\n\n<!-- output -->\n```text\n1\n```\n\n"
        "- item\n\n  <!-- fragment: continues the block above -->\n  ```python\n"
        "  f(x)\n  ```\n\n```toml\n[a]\n```\n",
        encoding="utf-8",
    )
    blocks = fenced_blocks(page)
    assert [(b.line, b.info, b.code) for b in blocks] == [
        (3, "python", "print(1)\n"),
        (8, "text", "1\n"),
        (15, "python", "f(x)\n"),
        (19, "toml", "[a]\n"),
    ]
    assert [b.is_fragment for b in blocks] == [False, False, True, False]
    assert OUTPUT.match(blocks[1].marker)


def test_output_comparison_ignores_trailing_space_and_takes_ellipses() -> None:
    assert matches("a\n[<function f at 0x...>]\n", "a  \n[<function f at 0x7f3e>]\n\n")
    assert not matches("a\nb\n", "a\nc\n")
    assert not matches("a\n", "a\nb\n")


def test_markers_are_used_as_meant() -> None:
    """``python`` alone opens a Python block (mkdocs would not highlight ``python x``);
    a fragment marker stands before a Python block, an output marker before a text one."""
    for page in PAGES:
        for block in fenced_blocks(page):
            if block.info.startswith("python"):
                assert block.info == "python", f"{block.name}: ```{block.info}"
            if FRAGMENT.match(block.marker) or PYTEST.match(block.marker):
                assert block.is_python, f"{block.name}: {block.marker} before ```{block.info}"
            if OUTPUT.match(block.marker):
                assert block.info == "text", f"{block.name}: output marker, ```{block.info}"
