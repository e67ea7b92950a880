"""Async receivers: asend, asend_robust, and send() with async receivers.

Every test drives a real event loop with asyncio.run(); no pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import inspect
import logging
import sys
import threading
import warnings
import weakref
from typing import Any

import pytest
from asgiref.sync import markcoroutinefunction as asgiref_markcoroutinefunction

from tocsin import AsyncReceiversInLoopError, Signal, TocsinError

TIMEOUT = 5  # seconds; only reached when a test is about to fail


class Boom(Exception):
    pass


def values(responses):
    return [response for _, response in responses]


def receivers_of(responses):
    return [r for r, _ in responses]


def sync_named(name, log):
    def receive(**kwargs):
        log.append(name)
        return name

    return receive


def async_named(name, log, delay=0.0):
    async def receive(**kwargs):
        log.append(f"{name}:start")
        await asyncio.sleep(delay)
        log.append(f"{name}:end")
        return name

    return receive


def _tocsin_records(caplog):
    return [r for r in caplog.records if r.name == "tocsin" or r.name.startswith("tocsin.")]


# -- asend -----------------------------------------------------------------------------


def test_asend_returns_the_sync_responses_then_the_async_ones_as_django_does():
    sig = Signal()
    log = []
    receivers = [
        sync_named("s1", log),
        async_named("a1", log, delay=0.05),  # finishes last
        sync_named("s2", log),
        async_named("a2", log, delay=0.0),  # finishes first
        sync_named("s3", log),
    ]
    for r in receivers:
        sig.connect(r)
    responses = asyncio.run(sig.asend(None, value=1))
    s1, a1, s2, a2, s3 = receivers
    assert receivers_of(responses) == [s1, s2, s3, a1, a2]
    assert values(responses) == ["s1", "s2", "s3", "a1", "a2"]
    # Sync receivers are called in registration order, async ones start in
    # registration order and run concurrently (a2 finishes first), and still the
    # responses above are in registration order within each kind.
    assert [entry for entry in log if ":" not in entry] == ["s1", "s2", "s3"]
    assert log.index("a1:start") < log.index("a2:start") < log.index("a2:end")
    assert log.index("a2:end") < log.index("a1:end")


def test_asend_passes_signal_sender_and_arguments():
    sig = Signal()
    seen = []

    async def receive(sender, **kwargs):
        seen.append((sender, kwargs))
        return "ok"

    sig.connect(receive)
    assert asyncio.run(sig.asend("shop", order=3)) == [(receive, "ok")]
    assert seen == [("shop", {"signal": sig, "order": 3})]


def _mutual_wait_receivers(log):
    first_started, second_started = asyncio.Event(), asyncio.Event()

    async def first(**kwargs):
        log.append("first:start")
        first_started.set()
        await asyncio.wait_for(second_started.wait(), TIMEOUT)
        log.append("first:end")
        return "first"

    async def second(**kwargs):
        log.append("second:start")
        second_started.set()
        await asyncio.wait_for(first_started.wait(), TIMEOUT)
        log.append("second:end")
        return "second"

    return first, second


@pytest.mark.parametrize("method", ["asend", "asend_robust"])
def test_async_receivers_run_concurrently(method):
    # Each receiver waits for the other to have started: run one after the other,
    # the first would time out.
    async def main():
        sig = Signal()
        log = []
        first, second = _mutual_wait_receivers(log)
        sig.connect(first)
        sig.connect(second)
        responses = await getattr(sig, method)(None)
        return responses, first, second, log

    responses, first, second, log = asyncio.run(main())
    assert responses == [(first, "first"), (second, "second")]
    assert log[:2] == ["first:start", "second:start"]
    assert sorted(log[2:]) == ["first:end", "second:end"]


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_outside_a_loop_runs_async_receivers_concurrently(method):
    sig = Signal()
    log = []
    first, second = _mutual_wait_receivers(log)  # the events bind to send()'s loop
    sig.connect(first)
    sig.connect(second)
    responses = getattr(sig, method)(None)
    assert responses == [(first, "first"), (second, "second")]
    assert log[:2] == ["first:start", "second:start"]
    assert sorted(log[2:]) == ["first:end", "second:end"]


def test_asend_runs_sync_receivers_off_the_loop_thread_as_django_does():
    sig = Signal()
    threads = []

    def sync_receiver(**kwargs):
        threads.append(threading.get_ident())
        return "sync"

    async def async_receiver(**kwargs):
        threads.append(threading.get_ident())
        return "async"

    sig.connect(sync_receiver)
    sig.connect(async_receiver)
    assert values(asyncio.run(sig.asend(None))) == ["sync", "async"]
    assert sorted(threads).count(threading.get_ident()) == 1  # the async one, in the loop
    assert len(set(threads)) == 2


@pytest.mark.parametrize("asgiref", [True, False], ids=["asgiref", "executor"])
def test_asend_runs_the_sync_receivers_in_one_hop_in_order(
    asgiref: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not asgiref:  # `from asgiref.sync import ...` then raises ImportError
        monkeypatch.setitem(sys.modules, "asgiref.sync", None)
    sig = Signal()
    seen: list[tuple[str, int]] = []
    marker = contextvars.ContextVar("marker", default="unset")

    def receiver_for(name: str) -> Any:
        def receive(**kwargs: Any) -> str:
            seen.append((f"{name}:{marker.get()}", threading.get_ident()))
            return name

        return receive

    receivers = [receiver_for(name) for name in ("a", "b", "c")]
    for r in receivers:
        sig.connect(r)

    async def main() -> Any:
        marker.set("set in the task")
        return await sig.asend(None), threading.get_ident()

    responses, loop_thread = asyncio.run(main())
    assert values(responses) == ["a", "b", "c"]
    names = [name for name, _ in seen]
    assert names == ["a:set in the task", "b:set in the task", "c:set in the task"]
    threads = {thread for _, thread in seen}
    assert len(threads) == 1  # one hop for all of them
    assert loop_thread not in threads


def test_asend_with_only_sync_receivers():
    sig = Signal()
    log = []
    a, b = sync_named("a", log), sync_named("b", log)
    sig.connect(a)
    sig.connect(b)
    assert asyncio.run(sig.asend("s")) == [(a, "a"), (b, "b")]
    assert asyncio.run(sig.asend_robust("s")) == [(a, "a"), (b, "b")]
    assert log == ["a", "b", "a", "b"]


def test_asend_without_receivers_and_when_muted():
    sig = Signal()
    assert asyncio.run(sig.asend(None)) == []
    log = []
    receiver = async_named("a", log)
    sig.connect(receiver)
    with sig.muted():
        assert asyncio.run(sig.asend(None)) == []
        assert asyncio.run(sig.asend_robust(None)) == []
        assert sig.send(None) == []
    assert log == []
    assert values(asyncio.run(sig.asend(None))) == ["a"]


def test_asend_respects_sender_filter_and_priority():
    sig = Signal()
    log = []
    low = async_named("low", log)
    high = async_named("high", log)
    other = async_named("other", log)
    sig.connect(low, sender="shop")
    sig.connect(high, sender="shop", priority=5)
    sig.connect(other, sender="bank")
    assert values(asyncio.run(sig.asend("shop"))) == ["high", "low"]
    assert values(asyncio.run(sig.asend("bank"))) == ["other"]
    assert asyncio.run(sig.asend("nobody")) == []


def test_collected_async_receiver_disappears():
    sig = Signal()

    class Service:
        async def handle(self, **kwargs):
            return "handled"

    service = Service()
    sig.connect(service.handle)
    assert values(asyncio.run(sig.asend(None))) == ["handled"]
    ref = weakref.ref(service)
    del service
    gc.collect()
    assert ref() is None
    assert asyncio.run(sig.asend(None)) == []
    assert sig.send(None) == []
    assert sig.receivers == []


# -- exceptions ------------------------------------------------------------------------


def _no_unawaited_coroutines(action):
    """Run *action*, then collect garbage; return the RuntimeWarnings that appeared."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            action()
        finally:
            gc.collect()
    return [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_asend_propagates_an_async_receiver_exception():
    sig = Signal()
    log = []

    async def fail(**kwargs):
        raise Boom("async boom")

    ran = threading.Event()

    def before(**kwargs):
        log.append("before")
        ran.set()

    sig.connect(before)
    sig.connect(fail)

    def action():
        with pytest.raises(Boom, match="async boom"):
            asyncio.run(sig.asend(None))

    assert _no_unawaited_coroutines(action) == []
    # As in Django, the sync receivers run in a thread alongside the async ones, and
    # the async failure propagates without waiting for them: they ran at most once.
    ran.wait(0.5)
    assert log in ([], ["before"])


def test_asend_propagates_a_sync_receiver_exception_without_leaking_coroutines():
    sig = Signal()
    log = []

    def fail(**kwargs):
        raise Boom("sync boom")

    early, after = async_named("early", log), sync_named("after", log)
    sig.connect(early)  # its coroutine is made before `fail` runs
    sig.connect(fail)
    sig.connect(after)

    def action():
        with pytest.raises(Boom, match="sync boom"):
            asyncio.run(sig.asend(None))
        with pytest.raises(Boom, match="sync boom"):
            sig.send(None)

    assert _no_unawaited_coroutines(action) == []
    assert "after" not in log
    log.clear()
    with pytest.raises(Boom, match="sync boom"):
        sig.send(None)  # sync receivers first: no coroutine made yet
    assert log == []


def test_asend_robust_catches_and_logs_async_exceptions(caplog):
    sig = Signal()
    log = []

    async def fail(**kwargs):
        await asyncio.sleep(0)
        raise Boom("async boom")

    def sync_fail(**kwargs):
        raise Boom("sync boom")

    ok = async_named("ok", log)
    sig.connect(ok)
    sig.connect(fail)
    sig.connect(sync_fail)
    with caplog.at_level(logging.ERROR, logger="tocsin"):
        responses = asyncio.run(sig.asend_robust(None))
    assert receivers_of(responses) == [sync_fail, ok, fail]  # sync first, as Django
    assert responses[1][1] == "ok"
    async_error, sync_error = responses[2][1], responses[0][1]
    assert isinstance(async_error, Boom)
    assert str(async_error) == "async boom"
    assert async_error.__traceback__ is not None
    assert isinstance(sync_error, Boom)
    assert sync_error.__traceback__ is not None
    records = _tocsin_records(caplog)
    assert len(records) == 2
    by_error = {record.exc_info[1]: record for record in records}
    assert set(by_error) == {async_error, sync_error}
    for error, receiver in ((async_error, fail), (sync_error, sync_fail)):
        record = by_error[error]
        assert record.levelno == logging.ERROR
        assert record.getMessage() == (
            f"Error calling {receiver.__qualname__} in Signal.send_robust() ({error})"
        )


def test_send_robust_outside_a_loop_catches_and_logs_async_exceptions(caplog):
    sig = Signal()

    async def fail(**kwargs):
        raise Boom("async boom")

    sig.connect(fail)
    with caplog.at_level(logging.ERROR, logger="tocsin"):
        [(receiver, error)] = sig.send_robust(None)
    assert receiver is fail
    assert isinstance(error, Boom)
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_name == "fail"
    [record] = _tocsin_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"Error calling {fail.__qualname__} in Signal.send_robust() (async boom)"
    )
    assert record.exc_info[1] is error


def test_asend_robust_catches_an_error_raised_when_an_async_callable_is_called(caplog):
    sig = Signal()

    def fails_on_call(**kwargs):
        raise Boom("on call")

    asgiref_markcoroutinefunction(fails_on_call)
    sig.connect(fails_on_call)
    with caplog.at_level(logging.ERROR, logger="tocsin"):
        [(_, error)] = asyncio.run(sig.asend_robust(None))
    assert isinstance(error, Boom)
    [record] = _tocsin_records(caplog)
    assert "fails_on_call" in record.getMessage()
    assert record.getMessage().endswith("in Signal.send_robust() (on call)")


class Halt(BaseException):
    pass


def test_asend_robust_does_not_catch_base_exceptions():
    sig = Signal()

    async def halt(**kwargs):
        raise Halt()

    sig.connect(halt)
    with pytest.raises(Halt):
        asyncio.run(sig.asend_robust(None))
    with pytest.raises(Halt):
        sig.send_robust(None)


# -- send() and async receivers --------------------------------------------------------


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_outside_a_loop_runs_async_receivers_to_completion(method):
    sig = Signal()
    log = []

    async def slow(**kwargs):
        await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        log.append("slow:done")
        return "slow"

    before, after = sync_named("before", log), sync_named("after", log)
    sig.connect(before)
    sig.connect(slow)
    sig.connect(after)
    for _ in range(2):  # each send runs its own loop to completion
        log.clear()
        responses = getattr(sig, method)("sender", value=1)
        assert responses == [(before, "before"), (after, "after"), (slow, "slow")]
        assert "slow:done" in log
        assert not inspect.isawaitable(responses[2][1])


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_inside_a_running_loop_with_async_receivers_raises(method):
    sig = Signal(name="shop.paid")
    calls = []

    def sync_receiver(**kwargs):
        calls.append("sync")
        return "sync"

    async def body():
        calls.append("async-body")
        return "async"

    def async_receiver(**kwargs):  # marked async: the call itself is observable
        calls.append("async-call")
        return body()

    asgiref_markcoroutinefunction(async_receiver)
    sig.connect(sync_receiver)
    sig.connect(async_receiver)

    async def main():
        with pytest.raises(AsyncReceiversInLoopError) as excinfo:
            getattr(sig, method)(None)
        message = str(excinfo.value)
        # And asend works in the very same loop.
        responses = await sig.asend(None)
        return message, responses

    def action():
        return asyncio.run(main())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message, responses = action()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert "asend" in message
    assert f"{method.replace('send', 'asend')}(" in message
    # Only from the asend, whose sync receivers run in a thread while the async ones run.
    assert sorted(calls) == ["async-body", "async-call", "sync"]
    assert calls.index("async-call") < calls.index("async-body")
    assert values(responses) == ["sync", "async"]


def test_async_receivers_in_loop_error_is_a_tocsin_runtime_error():
    assert issubclass(AsyncReceiversInLoopError, TocsinError)
    assert issubclass(AsyncReceiversInLoopError, RuntimeError)


def test_send_inside_a_running_loop_with_only_sync_receivers_works():
    sig = Signal()
    log = []
    a = sync_named("a", log)
    sig.connect(a)

    async def main():
        return sig.send(None), sig.send_robust("s")

    assert asyncio.run(main()) == ([(a, "a")], [(a, "a")])


def test_send_inside_a_loop_raises_only_for_senders_with_async_receivers():
    sig = Signal()
    log = []
    a = sync_named("a", log)
    b = async_named("b", log)
    sig.connect(a)
    sig.connect(b, sender="async-sender")

    async def main():
        assert sig.send("other") == [(a, "a")]
        with pytest.raises(AsyncReceiversInLoopError):
            sig.send("async-sender")
        return await sig.asend("async-sender")

    assert values(asyncio.run(main())) == ["a", "b"]


def test_send_inside_a_loop_after_the_last_async_receiver_was_collected():
    # The receivers were cached while an async one was alive; once it is gone, only
    # sync receivers remain and send() must work inside the loop again.
    sig = Signal()
    log = []
    sync = sync_named("sync", log)
    sig.connect(sync)

    def make():
        async def short_lived(**kwargs):
            return "async"

        return short_lived

    short_lived = make()
    sig.connect(short_lived)
    ref = weakref.ref(short_lived)

    async def main():
        nonlocal short_lived
        assert values(await sig.asend(None)) == ["sync", "async"]
        with pytest.raises(AsyncReceiversInLoopError):
            sig.send(None)
        del short_lived
        gc.collect()
        assert ref() is None
        return sig.send(None), sig.send_robust(None)

    assert asyncio.run(main()) == ([(sync, "sync")], [(sync, "sync")])


def test_send_with_async_receivers_keeps_no_reference_to_arguments():
    sig = Signal()

    async def receive(payload, **kwargs):
        await asyncio.sleep(0)
        return "ok"

    sig.connect(receive)

    class Payload:
        pass

    for method in ("send", "send_robust"):
        payload = Payload()
        ref = weakref.ref(payload)
        assert values(getattr(sig, method)(None, payload=payload)) == ["ok"]
        del payload
        gc.collect()
        assert ref() is None

    async def main():
        payload = Payload()
        ref = weakref.ref(payload)
        assert values(await sig.asend(None, payload=payload)) == ["ok"]
        del payload
        gc.collect()
        return ref() is None

    assert asyncio.run(main())


# -- what counts as async --------------------------------------------------------------


async def _coroutine_function(**kwargs):
    await asyncio.sleep(0)
    return "coroutine-function"


class _AsyncMethods:
    async def handle(self, **kwargs):
        await asyncio.sleep(0)
        return "async-method"


class _AsyncCallable:
    async def __call__(self, **kwargs):
        await asyncio.sleep(0)
        return "async-callable-instance"


def _async_partial():
    async def base(tag, **kwargs):
        await asyncio.sleep(0)
        return tag

    return functools.partial(base, "async-partial")


def _asgiref_marked():
    def marked(**kwargs):
        return _coroutine_function(**kwargs)

    return asgiref_markcoroutinefunction(marked)


def _inspect_marked():
    def marked(**kwargs):
        return _coroutine_function(**kwargs)

    return inspect.markcoroutinefunction(marked)


ASYNC_FACTORIES = {
    "coroutine-function": (lambda: _coroutine_function, "coroutine-function"),
    "async-bound-method": (lambda: _AsyncMethods().handle, "async-method"),
    "async-callable-instance": (_AsyncCallable, "async-callable-instance"),
    "partial": (_async_partial, "async-partial"),
    "asgiref-marked": (_asgiref_marked, "coroutine-function"),
    "inspect-marked": (_inspect_marked, "coroutine-function"),
}


@pytest.mark.parametrize("kind", list(ASYNC_FACTORIES))
def test_what_counts_as_async(kind):
    if kind == "inspect-marked" and sys.version_info < (3, 12):
        pytest.skip("inspect.markcoroutinefunction is new in Python 3.12")
    factory, expected = ASYNC_FACTORIES[kind]
    fn = factory()
    sig = Signal()
    sig.connect(fn, weak=False)

    async def main():
        with pytest.raises(AsyncReceiversInLoopError):
            sig.send(None)
        return await sig.asend(None), await sig.asend_robust(None)

    asend_result, asend_robust_result = asyncio.run(main())
    assert values(asend_result) == [expected]
    assert values(asend_robust_result) == [expected]
    assert values(sig.send(None)) == [expected]
    assert values(sig.send_robust(None)) == [expected]


def test_sync_callables_do_not_count_as_async():
    sig = Signal()

    class SyncCallable:
        def __call__(self, **kwargs):
            return "sync-instance"

    def plain(**kwargs):
        return "plain"

    keep = [SyncCallable(), plain, functools.partial(plain)]
    for fn in keep:
        sig.connect(fn)

    async def main():
        return sig.send(None)  # would raise if any counted as async

    assert values(asyncio.run(main())) == ["sync-instance", "plain", "plain"]
