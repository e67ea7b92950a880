"""Throwaway plugin distributions: real ones, built from source text in a test and
installed with pip into a directory of the test's own, without an index or downloads."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PluginDistribution:
    """A plugin distribution built and installed by :func:`install_plugin_distribution`."""

    #: The plugin's name: its entry point's name, what a PluginManager lists it as.
    name: str
    distribution: str
    version: str
    #: The module the entry point names (and ``attribute`` in it, if any).
    module: str
    attribute: str | None
    group: str
    #: The directory pip installed into: put it on ``sys.path`` to make it visible.
    path: Path
    #: Every top-level module the distribution installed.
    modules: tuple[str, ...]

    @property
    def entry_point(self) -> str:
        return f"{self.module}:{self.attribute}" if self.attribute else self.module


#: Numbers the throwaway distributions of this process, so their names never clash.
_throwaway_numbers = itertools.count(1)


def pip_install(
    projects: Iterable[str | os.PathLike[str]],
    target: str | os.PathLike[str],
    *,
    what: str | None = None,
) -> None:
    """Build and install project folders into *target* with pip, for a test to put on
    its path: no dependencies, no build isolation, no index, so nothing is downloaded
    (the environment's own setuptools, >= 70.1, builds them).  *what* names them in the
    error raised when pip fails (default: the folders)."""
    folders = [os.fspath(project) for project in projects]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--no-compile",
        "--disable-pip-version-check",
        "--target",
        os.fspath(target),
        *folders,
    ]
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PIP_NO_CACHE_DIR": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if result.returncode:
        raise RuntimeError(
            f"pip could not build and install {what or ', '.join(folders)} (exit code "
            f"{result.returncode}). Without build isolation or an index, the test "
            f"environment needs pip and setuptools>=70.1 installed.\n--- pip's output:\n"
            f"{result.stdout}{result.stderr}"
        )


def install_plugin_distribution(
    directory: str | os.PathLike[str],
    source: str,
    *,
    name: str | None = None,
    group: str = "tocsin.plugins",
    version: str = "0.1.0",
    module: str | None = None,
    attribute: str | None = None,
    modules: Mapping[str, str] | None = None,
    distribution: str | None = None,
) -> PluginDistribution:
    """Build a plugin distribution from *source* and install it with pip into
    ``<directory>/site``; return what was installed.

    *source* is the plugin module's code (dedented first, so a triple-quoted string
    indented with the test is fine).  The distribution declares one entry point in
    *group*: ``name = "module"`` (``"module:attribute"`` with *attribute*).  *modules*
    adds further top-level modules, name -> source.  Names default to unique ones
    (``tocsin_throwaway_<n>_<token>``), so distributions never clash in one process.

    It is a real distribution: ``pip install --no-deps --no-build-isolation --no-index
    --target``, so setuptools (>= 70.1) must be installed where the tests run.  Nothing
    is put on ``sys.path``; the ``tocsin_plugin_dist`` pytest fixture does that, and
    undoes it.
    """
    token = f"{next(_throwaway_numbers)}_{uuid.uuid4().hex[:8]}"
    module = module or f"tocsin_throwaway_{token}"
    name = name or f"throwaway-{token.replace('_', '-')}"
    distribution = distribution or f"tocsin-throwaway-{token.replace('_', '-')}"
    extra = dict(modules or {})
    for module_name in (module, *extra):
        if not module_name.isidentifier():
            raise ValueError(
                f"A plugin module name must be a Python identifier (a top-level module), "
                f"not {module_name!r}."
            )
    if module in extra:
        raise ValueError(f"modules= repeats the plugin module {module!r}; give it once.")
    root = Path(directory)
    project = root / "src" / distribution
    project.mkdir(parents=True)
    sources = {module: source, **extra}
    for module_name, text in sources.items():
        (project / f"{module_name}.py").write_text(
            textwrap.dedent(text).lstrip("\n"), encoding="utf-8"
        )
    value = f"{module}:{attribute}" if attribute else module
    (project / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["setuptools>=70.1"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        f"name = {json.dumps(distribution)}\n"
        f"version = {json.dumps(version)}\n"
        'description = "A throwaway tocsin plugin made by a test."\n\n'
        f"[project.entry-points.{json.dumps(group)}]\n"
        f"{json.dumps(name)} = {json.dumps(value)}\n\n"
        "[tool.setuptools]\n"
        f"py-modules = {json.dumps(sorted(sources))}\n",
        encoding="utf-8",
    )
    site = root / "site"
    pip_install([project], site, what=f"the throwaway plugin distribution {distribution!r}")
    return PluginDistribution(
        name=name,
        distribution=distribution,
        version=version,
        module=module,
        attribute=attribute,
        group=group,
        path=site,
        modules=tuple(sorted(sources)),
    )
