"""The send path (tocsin._send, and its C twin tocsin._speedups) at its edges.

``make test`` runs this module, with the rest of the core suite, twice: once as
installed (the C send where it was built) and once with ``TOCSIN_PURE_PYTHON=1``.
Every test here must pass on both, with the same results and the same errors.
"""

from __future__ import annotations

import copy
import functools
import gc
import inspect
import logging
import os
import shutil
import subprocess
import sys
import traceback
import weakref
from pathlib import Path
from typing import Any

import pytest

from tocsin import Signal
from tocsin._send import COMPILED, PureSendCore, SendCore
from tocsin._switches import env_switch
from tocsin.testing import pip_install


class Shop:
    pass


class Listener:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def on_event(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        return "method"


def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def test_which_send_runs_is_what_the_environment_asks() -> None:
    pure_asked = env_switch("TOCSIN_PURE_PYTHON")
    if pure_asked:
        assert not COMPILED
    if os.environ.get("TOCSIN_EXPECT_COMPILED") == "1":  # set by `make test`
        assert COMPILED, "tocsin._speedups was not built: the C send is not under test"
    assert (SendCore is PureSendCore) is (not COMPILED)
    assert issubclass(Signal, SendCore)


def test_a_fresh_process_honours_tocsin_pure_python() -> None:
    code = "import tocsin._send as s; print(s.COMPILED, s.SendCore.__module__)"
    env = {**os.environ, "TOCSIN_PURE_PYTHON": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "tocsin._send"]


ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import tocsin, tocsin._send as s\n"
    "sig = tocsin.Signal(name='probe')\n"
    "def echo(**kwargs): return kwargs['value']\n"
    "sig.connect(echo)\n"
    "print(s.COMPILED, [r for _, r in sig.send(None, value=7)])\n"
)


def _install_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """Install tocsin from a copy of this checkout with pip; return what PROBE prints."""
    source = tmp_path / "source"
    for name in ("pyproject.toml", "setup.py", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "core", source / "core", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    monkeypatch.delenv("TOCSIN_PURE_PYTHON", raising=False)  # the pure suite run sets it
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pip_install([source], tmp_path / "site", what="tocsin")
    monkeypatch.delenv("TOCSIN_PURE_PYTHON", raising=False)
    run_env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=run_env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler here")
def test_pip_builds_the_c_send_where_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _install_copy(tmp_path, monkeypatch) == "True [7]"
    assert list((tmp_path / "site" / "tocsin").glob("_speedups*.c")) == []  # source not shipped


def test_an_install_whose_c_build_fails_is_pure_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _install_copy(tmp_path, monkeypatch, CC="false") == "False [7]"
    assert list((tmp_path / "site" / "tocsin").glob("_speedups*")) == []


def test_tocsin_pure_python_at_install_builds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _install_copy(tmp_path, monkeypatch, TOCSIN_PURE_PYTHON="1") == "False [7]"
    assert list((tmp_path / "site" / "tocsin").glob("_speedups*")) == []


def test_every_receiver_gets_signal_sender_and_each_named_argument() -> None:
    sig = Signal(name="t.send")
    sig.connect(echo, sender=Shop)
    [(receiver, response)] = sig.send(Shop, a=1, b="two")
    assert receiver is echo
    assert response == {"signal": sig, "sender": Shop, "a": 1, "b": "two"}
    # and once more from the per-sender tuple, built by the first send
    assert sig.send(Shop, b=3) == [(echo, {"signal": sig, "sender": Shop, "b": 3})]


def test_many_named_arguments() -> None:
    sig = Signal(name="t.many")
    sig.connect(echo, sender=Shop)
    named = {f"arg{i}": i for i in range(40)}
    sig.send(Shop)  # build the tuple
    [(_, response)] = sig.send(Shop, **named)
    assert response == {"signal": sig, "sender": Shop, **named}


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_sender_given_by_name(method: str) -> None:
    sig = Signal(name="t.by_name")
    send = getattr(sig, method)
    assert send(sender=Shop, a=1) == []  # no receiver at all
    sig.connect(echo, sender=Shop)
    expected = [(echo, {"signal": sig, "sender": Shop, "a": 1, "b": 2})]
    assert send(sender=Shop, a=1, b=2) == expected  # builds the tuple
    assert send(sender=Shop, a=1, b=2) == expected  # from the tuple
    assert send(a=1, sender=Shop, b=2) == expected  # sender between the others
    assert send(a=1, b=2, sender=Shop) == expected
    assert send(sender=Shop) == [(echo, {"signal": sig, "sender": Shop})]


def test_keyword_names_are_not_mixed_up_between_call_sites() -> None:
    # The C send keeps the receivers' keyword names of the last call site; a call with
    # other names, or the same names with the sender elsewhere, must not reuse them.
    sig = Signal(name="t.names")
    sig.connect(echo, sender=Shop)
    for _ in range(3):
        assert sig.send(sender=Shop, a=1) == [(echo, {"signal": sig, "sender": Shop, "a": 1})]
        assert sig.send(Shop, a=1, sender_=2) == [
            (echo, {"signal": sig, "sender": Shop, "a": 1, "sender_": 2})
        ]
        assert sig.send(a=1, sender=Shop) == [(echo, {"signal": sig, "sender": Shop, "a": 1})]
        assert sig.send(Shop, a=1) == [(echo, {"signal": sig, "sender": Shop, "a": 1})]


def test_send_robust_returns_each_exception_with_its_traceback_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = Signal(name="t.robust")

    def failing(**kwargs: Any) -> None:
        raise ValueError("no")

    sig.connect(failing, sender=Shop)
    sig.connect(echo, sender=Shop)
    for call in (lambda: sig.send_robust(Shop, a=1), lambda: sig.send_robust(sender=Shop, a=1)):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="tocsin.dispatch"):
            [(first, error), (second, response)] = call()
        assert first is failing
        assert isinstance(error, ValueError)
        assert error.__traceback__ is not None
        assert "failing" in "".join(traceback.format_tb(error.__traceback__))
        assert (second, response) == (echo, {"signal": sig, "sender": Shop, "a": 1})
        [record] = caplog.records
        assert record.getMessage() == (
            "Error calling test_send_robust_returns_each_exception_with_its_traceback_and_"
            "logs_it.<locals>.failing in Signal.send_robust() (no)"
        )
        assert record.exc_info is not None
        assert record.exc_info[1] is error


def test_send_robust_lets_a_base_exception_through() -> None:
    sig = Signal(name="t.robust.base")

    def interrupt(**kwargs: Any) -> None:
        raise KeyboardInterrupt

    sig.connect(interrupt, sender=Shop)
    for _ in range(2):  # the slow path, then the cached tuple
        with pytest.raises(KeyboardInterrupt):
            sig.send_robust(sender=Shop)


def test_sender_given_twice() -> None:
    empty = Signal(name="t.twice.empty")
    sig = Signal(name="t.twice")
    sig.connect(echo, sender=Shop)
    sig.send(Shop)
    for signal in (empty, sig):
        with pytest.raises(TypeError, match="multiple values for argument 'sender'"):
            signal.send(Shop, sender=Shop)  # type: ignore[misc]


def test_a_named_argument_called_self_is_refused() -> None:
    empty = Signal(name="t.self.empty")
    sig = Signal(name="t.self")
    sig.connect(echo, sender=Shop)
    sig.send(Shop)
    for signal in (empty, sig):
        with pytest.raises(TypeError, match="multiple values for argument 'self'"):
            signal.send(Shop, self=1)  # type: ignore[misc]
        with pytest.raises(TypeError, match="multiple values for argument 'self'"):
            signal.send(sender=Shop, self=1)  # type: ignore[misc]


def test_the_signature_is_the_python_one() -> None:
    parameters = inspect.signature(Signal(name="t.signature").send).parameters
    assert [(p.name, p.kind) for p in parameters.values()] == [
        ("sender", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("named", inspect.Parameter.VAR_KEYWORD),
    ]


class Bag(dict):  # type: ignore[type-arg]
    """A dict that can be weakly referenced: its update() is a bound method written in C."""


def test_a_bound_method_written_in_c_as_a_receiver() -> None:
    """Such a method (another signal's send under the C send, a dict subclass's
    update, a compiled class's method) is made anew on each access, as a Python bound
    method is: it is held and identified by its object, not by the passing object."""
    sig, strong = Signal(name="t.c_method"), Signal(name="t.c_method.strong")
    bag = Bag()
    sig.connect(bag.update)  # weakly, the default
    strong.connect(bag.update, weak=False)
    gc.collect()
    assert sig.receivers == [bag.update]
    assert sig.send(Shop, a=1) == [(bag.update, None)]
    assert bag == {"signal": sig, "sender": Shop, "a": 1}
    sig.connect(bag.update)  # the same receiver again: still one connection
    assert len(sig.receivers) == 1
    assert strong.disconnect(bag.update) is True
    assert strong.receivers == []
    bag_ref = weakref.ref(bag)
    bag.clear()
    del bag
    gc.collect()
    assert bag_ref() is None
    assert sig.receivers == []  # held weakly: gone with its object
    assert sig.send(Shop) == []


def test_another_signals_send_connects_and_disconnects_by_identity() -> None:
    outer, inner = Signal(name="t.outer"), Signal(name="t.inner")
    outer.connect(inner.send)
    gc.collect()
    assert outer.receivers == [inner.send]
    assert outer.send(Shop) == [(inner.send, [])]  # inner has no receiver of its own
    assert outer.disconnect(inner.send) is True
    assert outer.receivers == []


def test_a_signal_copies_as_in_pure_python() -> None:
    sig = Signal(name="t.copy")
    sig.connect(echo, sender=Shop)
    duplicate = copy.copy(sig)
    assert duplicate.name == "t.copy"
    assert duplicate.send(Shop, a=1) == [(echo, {"signal": duplicate, "sender": Shop, "a": 1})]


def test_sender_missing_or_extra_positional_arguments() -> None:
    sig = Signal(name="t.args")
    sig.connect(echo)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'sender'"):
        sig.send()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'sender'"):
        sig.send(a=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional argument"):
        sig.send(Shop, 1)  # type: ignore[call-arg]
    empty = Signal(name="t.args.empty")
    with pytest.raises(TypeError, match="'sender'"):
        empty.send()  # type: ignore[call-arg]


def test_a_named_argument_called_signal_is_an_error_at_the_receiver_call() -> None:
    sig = Signal(name="t.clash")
    assert sig.send(Shop, signal=1) == []  # no receiver: nothing is called
    sig.connect(echo, sender=Shop)
    sig.send(Shop)
    with pytest.raises(TypeError, match="multiple values for keyword argument 'signal'"):
        sig.send(Shop, signal=1)


def test_bound_methods_strong_holders_and_collected_receivers() -> None:
    sig = Signal(name="t.holders")
    listener = Listener()
    sig.connect(listener.on_event, sender=Shop)  # a WeakMethod holder

    class NoWeakref:
        __slots__ = ()

        def __call__(self, **kwargs: Any) -> str:
            return "strong"

    callable_object = NoWeakref()
    sig.connect(callable_object, sender=Shop, weak=False)  # a strong holder
    doomed = eval("lambda **kwargs: 'doomed'")
    sig.connect(doomed, sender=Shop)
    assert [r for _, r in sig.send(Shop, x=1)] == ["method", "strong", "doomed"]
    del doomed
    gc.collect()
    assert [r for _, r in sig.send(Shop, x=2)] == ["method", "strong"]
    assert listener.calls == [
        {"signal": sig, "sender": Shop, "x": 1},
        {"signal": sig, "sender": Shop, "x": 2},
    ]


def test_an_exception_propagates_and_stops_the_send() -> None:
    sig = Signal(name="t.raise")
    log: list[str] = []

    def first(**kwargs: Any) -> None:
        log.append("first")
        raise LookupError("first failed")

    def second(**kwargs: Any) -> None:
        log.append("second")

    sig.connect(first, sender=Shop)
    sig.connect(second, sender=Shop)
    for _ in range(2):  # the slow path, then the per-sender tuple
        with pytest.raises(LookupError, match="first failed"):
            sig.send(Shop, a=1)
    assert log == ["first", "first"]


def test_a_receiver_replacing_the_cache_mid_send() -> None:
    sig = Signal(name="t.mutate")
    seen: list[str] = []

    def late(**kwargs: Any) -> str:
        seen.append("late")
        return "late"

    def disconnect_all(**kwargs: Any) -> str:
        seen.append("clear")
        sig.receivers = []
        sig.connect(late, sender=Shop)
        return "clear"

    def after(**kwargs: Any) -> str:
        seen.append("after")
        return "after"

    sig.connect(disconnect_all, sender=Shop, weak=False)
    sig.connect(after, sender=Shop)
    assert [r for _, r in sig.send(Shop)] == ["clear", "after"]  # this send's tuple
    assert [r for _, r in sig.send(Shop)] == ["late"]
    assert seen == ["clear", "after", "late"]


def test_send_holds_no_reference_once_done() -> None:
    """Every object a send touches has the reference count it had before: no leak
    (a C reference-counting slip shows here) and nothing kept."""
    sig = Signal(name="t.refs")
    listener = Listener()

    def plain(**kwargs: Any) -> None:
        return None

    def failing(**kwargs: Any) -> None:
        raise ValueError("no")

    sig.connect(plain, sender=Shop)
    sig.connect(listener.on_event, sender=Shop)
    other = Signal(name="t.refs.failing")
    other.connect(failing, sender=Shop)
    argument = object()
    sig.send(Shop, value=argument)
    listener.calls.clear()
    many = {f"arg{i}": argument for i in range(12)}  # past the C send's stack buffer
    empty = Signal(name="t.refs.empty")
    tracked = (argument, plain, Shop, sig, listener, failing, other, empty)

    def every_shape() -> None:
        sig.send(Shop, value=argument)  # the cached tuple
        sig.send(Shop, **many)
        sig.send(sender=Shop, value=argument)  # sender by name
        sig.send(value=argument, sender=Shop, **many)
        sig.send_robust(Shop, value=argument)
        sig.send_robust(sender=Shop, value=argument)
        assert isinstance(other.send_robust(sender=Shop, value=argument)[0][1], ValueError)
        sig.send(argument, value=argument)  # no receiver for this sender
        empty.send(Shop, value=argument)
        with pytest.raises(ValueError, match="no"):
            other.send(Shop, value=argument)
        with pytest.raises(TypeError, match="multiple values"):
            sig.send(Shop, signal=argument)
        with pytest.raises(TypeError, match="sender"):
            sig.send(value=argument)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="multiple values for argument 'sender'"):
            sig.send(Shop, sender=argument)  # type: ignore[misc]
        listener.calls.clear()

    # Logged failures would be kept by pytest's log capture, tracebacks and all.
    dispatch_logger = logging.getLogger("tocsin.dispatch")
    dispatch_logger.disabled = True
    try:
        every_shape()  # first sends build caches: count only from here
        gc.collect()  # a failure's traceback is a cycle (frames, locals), as in Django
        before = [sys.getrefcount(o) for o in tracked]
        for _ in range(500):
            every_shape()
        gc.collect()
        after = [sys.getrefcount(o) for o in tracked]
    finally:
        dispatch_logger.disabled = False
    assert after == before


def test_signals_are_weakly_referenceable_and_collected() -> None:
    sig = Signal(name="t.collect")
    # A receiver that refers back to its signal: a cycle only the collector can free.
    cycle = functools.partial(lambda signals, **kwargs: signals, [sig])
    sig.connect(cycle, weak=False)
    assert sig.send(None) == [(cycle, [sig])]
    ref = weakref.ref(sig)
    del sig, cycle
    gc.collect()
    assert ref() is None
