"""The one thing pyproject.toml cannot say: build tocsin's C speedups only where it can.

``tocsin._speedups`` (Signal.send in C) is optional: where no C compiler is at hand,
on an interpreter other than CPython or a free-threaded CPython, or with
``TOCSIN_PURE_PYTHON=1`` in the environment at install time, tocsin installs as pure
Python and behaves the same.
"""

import os
import platform
import sysconfig

from setuptools import Extension, setup


def speedups() -> list[Extension]:
    if os.environ.get("TOCSIN_PURE_PYTHON", "") not in ("", "0"):
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
