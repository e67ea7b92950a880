"""The one thing pyproject.toml cannot say: build tocsin's C speedups only where it can.

``tocsin._speedups`` (Signal.send in C) is optional: where no C compiler is at hand,
or on a free-threaded build, or with ``TOCSIN_PURE_PYTHON=1`` in the environment at
install time, tocsin installs as pure Python and behaves the same.
"""

import os
import sysconfig

from setuptools import Extension, setup


def speedups() -> list[Extension]:
    if os.environ.get("TOCSIN_PURE_PYTHON", "") not in ("", "0"):
        return []
    if sysconfig.get_config_var("Py_GIL_DISABLED"):  # written for the GIL
        return []
    return [
        Extension(
            "tocsin._speedups",
            ["core/tocsin/_speedups.c"],
            optional=True,  # a failed build warns and leaves the pure-Python path
        )
    ]


setup(ext_modules=speedups())
