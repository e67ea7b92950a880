"""The one thing pyproject.toml cannot say: build tocsin's C speedups only where it can.

``tocsin._speedups`` (Signal.send in C) is optional: where no C compiler is at hand,
on an interpreter other than CPython or a free-threaded CPython, or with
``TOCSIN_PURE_PYTHON`` switched on in the environment at install time, tocsin installs
as pure Python and behaves the same.  ``TOCSIN_PURE_PYTHON`` is read by the same parser
as at run time (``tocsin._switches``), so ``false`` means false here too, and a word it
does not know stops the install with a message saying which words it takes.
"""

import importlib.util
import os
import platform
import sys
import sysconfig
from types import ModuleType

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _module_from(name: str, filename: str) -> ModuleType:
    """Run one file of core/tocsin as module *name*, without importing the package
    (whose __init__ needs the very extension being built)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "core", filename))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pure_python_asked() -> bool:
    """TOCSIN_PURE_PYTHON, read by tocsin._switches.parse_switch (which imports only
    tocsin._errors, loaded here by path too; both are removed again afterwards)."""
    names = ("tocsin._errors", "tocsin._switches")
    saved = {name: sys.modules.get(name) for name in names}
    try:
        _module_from("tocsin._errors", "tocsin/_errors.py")
        switches = _module_from("tocsin._switches", "tocsin/_switches.py")
        try:
            return bool(switches.env_switch("TOCSIN_PURE_PYTHON"))
        except ValueError as error:  # PluginConfigError
            raise SystemExit(f"error: installing tocsin: {error}") from None
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def speedups() -> list[Extension]:
    if pure_python_asked():
        return []
    if platform.python_implementation() != "CPython":  # written for CPython's C API
        return []
    if sysconfig.get_config_var("Py_GIL_DISABLED"):  # and for its GIL
        return []
    return [
        Extension(
            "tocsin._speedups",
            ["core/tocsin/_speedups.c"],
            optional=True,  # a failed build warns and leaves the pure-Python path
        )
    ]


setup(ext_modules=speedups())
