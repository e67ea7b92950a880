"""Run Django's own test suite with Django running on tocsin.

Usage::

    python tests/django_suite/run.py DJANGO_SOURCE [runtests.py options and labels]

DJANGO_SOURCE is an unpacked Django source distribution (the folder holding
``django/`` and ``tests/``); ``make django-suite`` fetches one with pip.  Django is
imported from it, not from wherever else it may be installed, so the tests run against
the Django they come from.  With no test labels, the apps in :data:`APPS` run; the
label ``ALL`` runs Django's whole suite.

Before any Django signal exists, ``django.dispatch.Signal`` and ``receiver`` are
replaced by tocsin's, so ``ModelSignal``, ``post_save``, ``request_finished``,
``user_logged_in``... are all tocsin signals; records that tocsin's ``send_robust``
logs under ``tocsin.dispatch`` are handled again by Django's ``django.dispatch``
logger, where Django's tests look for them.  The tests named in :mod:`skips` are
skipped, each with its reason.

``TOCSIN_DJANGO_SUITE_STOCK=1`` runs the same tests on stock Django (no swap, and only
the skips that are about this environment), as the baseline to compare with.  The
C send or the pure one runs as tocsin chooses (``TOCSIN_PURE_PYTHON=1`` for the pure
one; ``TOCSIN_EXPECT_COMPILED=1`` fails the run if the C send is not there).
"""

from __future__ import annotations

import logging
import os
import runpy
import sys
import unittest
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import skips  # beside this file

#: Django's test apps that exercise signals: the compatibility job runs these.
APPS = [
    "dispatch",
    "signals",
    "m2m_signals",
    "handlers",
    "delete",
    "test_utils",
    "auth_tests",
    "async",
    "asgi",
    "model_fields",
    "settings_tests",
    "invalid_models_tests",
]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    source = Path(argv[1]).resolve()
    tests_dir = source / "tests"
    if not (tests_dir / "runtests.py").is_file():
        print(f"{source} is not an unpacked Django source distribution (no tests/runtests.py)")
        return 2
    options = argv[2:]
    stock = os.environ.get("TOCSIN_DJANGO_SUITE_STOCK", "") not in ("", "0")

    # Django from the source distribution: for this process and for any it starts.
    sys.path[:0] = [str(tests_dir), str(source)]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(source), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    check_django_origin(source)

    if stock:
        print("django-suite: STOCK Django (django.dispatch not replaced)")
    else:
        swap_dispatch()

    whole_suite = "ALL" in options
    options = [o for o in options if o != "ALL"]
    labels, narrowed = read_options(options)
    install_skips(skips.SKIPS, stock=stock, whole_run=not (labels or narrowed))
    if not any(o == "--parallel" or o.startswith("--parallel=") for o in options):
        options = ["--parallel=1", *options]
    # --start-at and --start-after take no labels: they start the whole suite there.
    starts = any(o.partition("=")[0] in ("--start-at", "--start-after") for o in options)
    default_labels = [] if labels or starts or whole_suite else APPS
    sys.argv = [str(tests_dir / "runtests.py"), *options, *default_labels]
    try:
        runpy.run_path(str(tests_dir / "runtests.py"), run_name="__main__")
    except SystemExit as done:
        code = done.code
    else:
        code = 0
    if not stock:
        check_no_django_signal_left()
    return code if isinstance(code, int) else 1


def read_options(options: list[str]) -> tuple[list[str], bool]:
    """The test labels among runtests.py's options, and whether others narrow the run."""
    takes_value = {"-v", "--verbosity", "--settings", "--tag", "--exclude-tag", "-k"}
    takes_value |= {"--start-at", "--start-after", "--bisect", "--pair"}
    narrowing = {"--tag", "--exclude-tag", "-k", "--start-at", "--start-after"}
    labels: list[str] = []
    narrowed = False
    index = 0
    while index < len(options):
        option = options[index]
        name = option.partition("=")[0]
        narrowed = narrowed or name in narrowing
        if option in takes_value:
            index += 1
        elif option in ("--parallel", "--shuffle"):  # their value is optional
            following = options[index + 1] if index + 1 < len(options) else ""
            if following.isdigit() or following == "auto":
                index += 1
        elif not option.startswith("-"):
            labels.append(option)
        index += 1
    return labels, narrowed


def check_django_origin(source: Path) -> None:
    import django

    where = Path(django.__file__).resolve()
    if source not in where.parents:
        raise SystemExit(f"django-suite: imported Django from {where}, not from {source}")
    print(f"django-suite: Django {django.__version__} from {where.parent}")


# -- Django on tocsin ------------------------------------------------------------------

#: Modules of Django that make signals (or use ``receiver``) at import; none of them may
#: be imported before the swap, or their signals would be Django's own.
SIGNAL_MODULES = [
    "django.core.signals",
    "django.db.backends.signals",
    "django.db.models.signals",
    "django.test.signals",
    "django.contrib.auth.signals",
    "django.contrib.auth.hashers",
    "django.utils.autoreload",
    "django.utils.translation.trans_real",
    "django.template.autoreload",
]


def swap_dispatch() -> None:
    """Make ``django.dispatch.Signal`` and ``receiver`` tocsin's, before any signal exists."""
    import tocsin
    import tocsin._send

    already = [name for name in SIGNAL_MODULES if name in sys.modules]
    if already:
        raise SystemExit(f"django-suite: imported before the swap: {', '.join(already)}")
    # Defines Django's Signal class and receiver function, and makes no signal.
    import django.dispatch
    import django.dispatch.dispatcher

    _STOCK["Signal"] = django.dispatch.dispatcher.Signal
    django.dispatch.Signal = django.dispatch.dispatcher.Signal = tocsin.Signal
    django.dispatch.receiver = django.dispatch.dispatcher.receiver = tocsin.receiver
    bridge_logs()

    compiled = tocsin._send.COMPILED
    if os.environ.get("TOCSIN_EXPECT_COMPILED") == "1" and not compiled:
        raise SystemExit("django-suite: tocsin's C send was not built: it is not under test")
    import django.core.signals
    import django.db.models.signals
    import django.test.signals

    for signal in (
        django.core.signals.request_finished,
        django.core.signals.setting_changed,
        django.db.models.signals.post_save,
        django.test.signals.template_rendered,
    ):
        if not isinstance(signal, tocsin.Signal):
            raise SystemExit(f"django-suite: {signal!r} is not a tocsin.Signal: no swap")
    send = "C" if compiled else "pure-Python"
    print(
        f"django-suite: Django on tocsin ({send} send): "
        f"post_save is a {type(django.db.models.signals.post_save).__module__}."
        f"{type(django.db.models.signals.post_save).__qualname__} "
        f"(a subclass of tocsin.Signal)"
    )


def check_no_django_signal_left() -> None:
    """Fail the run if any Django module ended up holding a signal of Django's own class."""
    stock_signal = _STOCK["Signal"]
    found = [
        f"{name}.{attribute}"
        for name, module in list(sys.modules.items())
        if name.startswith("django.") and module is not None
        for attribute, value in list(vars(module).items())
        if issubclass(type(value), stock_signal)  # type(): lazy objects stay lazy
    ]
    if found:
        raise SystemExit(f"django-suite: signals of Django's own class: {', '.join(found)}")
    print("django-suite: no module of Django holds a signal of Django's own class")


#: What the swap replaced.
_STOCK: dict[str, Any] = {}


# -- logs ------------------------------------------------------------------------------


class ToDjangoDispatch(logging.Handler):
    """Hands each ``tocsin.dispatch`` record to the ``django.dispatch`` logger."""

    def __init__(self) -> None:
        super().__init__()
        self.target = logging.getLogger("django.dispatch")

    def emit(self, record: logging.LogRecord) -> None:
        if self.target.isEnabledFor(record.levelno):
            again = logging.makeLogRecord(record.__dict__)
            again.name = self.target.name
            self.target.handle(again)


def bridge_logs() -> None:
    source = logging.getLogger("tocsin.dispatch")
    source.addHandler(ToDjangoDispatch())
    source.propagate = False


# -- skips -----------------------------------------------------------------------------


def install_skips(entries: Iterable[Any], *, stock: bool, whole_run: bool) -> None:
    """Skip the listed tests: the runner's build_suite marks them once it has found them.

    A test is marked on its class (the suite's workers are forked from this process, so
    they see the mark).  An entry may name a test method or a whole class.  Only the
    first build_suite() is patched: the one runtests.py's runner makes.  Django's own
    tests of its runner build suites of their own, which are left alone.
    """
    from django.test.runner import DiscoverRunner, iter_test_cases

    if stock:
        wanted = {entry.test: entry for entry in entries if entry.stock}
    else:
        import tocsin._send

        send = "c" if tocsin._send.COMPILED else "pure"
        wanted = {entry.test: entry for entry in entries if entry.send in (None, send)}
    build_suite: Callable[..., Any] = DiscoverRunner.build_suite

    def build_suite_with_skips(self: DiscoverRunner, *args: Any, **kwargs: Any) -> Any:
        DiscoverRunner.build_suite = build_suite  # type: ignore[method-assign]
        suite = build_suite(self, *args, **kwargs)
        used = set()
        for test in iter_test_cases(suite):  # a parallel suite iterates its subsuites
            test_id = test.id()
            entry = wanted.get(test_id) or wanted.get(test_id.rpartition(".")[0])
            if entry is None:
                continue
            used.add(entry.test)
            cls = type(test)
            name = test._testMethodName
            method = getattr(cls, name)
            if not getattr(method, "__unittest_skip__", False):
                setattr(cls, name, unittest.skip(entry.reason)(method))
        unused = sorted(set(wanted) - used)
        print(
            f"django-suite: {len(used)} of {len(wanted)} listed skips apply to this run"
            + (f" (not: {', '.join(unused)})" if unused else "")
        )
        if unused and whole_run:
            raise SystemExit("django-suite: the skip list names tests that are not there")
        return suite

    DiscoverRunner.build_suite = build_suite_with_skips  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
