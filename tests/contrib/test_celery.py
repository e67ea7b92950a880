"""tocsin.contrib.celery: deferred receivers, against a real Redis and real Celery workers.

The first half runs in this process with ``task_always_eager`` (fast unit tests of
encoding, resolution, transactions).  The second half (``TestRealWorker``) starts a
real ``redis-server`` and real ``celery worker`` subprocesses whose receivers come
from a plugin distribution that pip builds for the purpose (see celery_harness.py).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import gc
import itertools
import json
import logging
import math
import os
import pathlib
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult
from celery_harness import (  # noqa: F401 (fixtures are found by name)
    CeleryEnv,
    Events,
    Worker,
    celery_env_fixture,
    events_fixture,
    main_worker_fixture,
    needs_redis,
)
from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from tocsin import PluginManager, Signal, receiver
from tocsin.contrib.celery import (
    TASK_NAME,
    Codec,
    DecodeContext,
    DeferredConfigurationError,
    DeferredDecodeError,
    DeferredEncodeError,
    DeferredPublishError,
    DeferredReceiver,
    RetryPolicy,
    codecs,
    connect_deferred,
    deferred,
    find_class,
    install,
    register_codec,
    set_session_factory,
)

# -- module-level types, so that they travel by "module:qualname" -----------------------


class Shop:
    pass


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class EagerBase(DeclarativeBase):
    pass


class Item(EagerBase):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


class PointCodec(Codec):
    tag = "test.point"

    def handles(self, cls: type) -> bool:
        return cls is Point

    def encode(self, value: Any, encode: Any) -> Any:
        return [value.x, value.y]

    def decode(self, data: Any, context: DecodeContext) -> Any:
        return Point(*data)


class TouchOnUnpickle:
    """A pickle that, when loaded, creates a file: what a hostile message would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


@pytest.fixture(scope="module")
def eager_app() -> Iterator[Any]:
    app = Celery("tocsin-eager", set_as_current=False, broker="memory://")
    app.conf.update(task_always_eager=True, task_eager_propagates=False)
    install(app, plugins=False)
    yield app
    app.close()


# -- eager: the sending side and the task, in this process ------------------------------


def test_eager_delivery_calls_the_function_with_decoded_values(eager_app: Any) -> None:
    sig = Signal(name="eager.delivery")
    calls: list[tuple[Any, ...]] = []

    @receiver(sig)
    @deferred(app=eager_app)
    def handler(
        sender: Any, signal: Signal, tocsin_message_id: str, tocsin_attempt: int, **named: Any
    ) -> Any:
        calls.append((sender, signal, tocsin_message_id, tocsin_attempt, named))
        return {"ok": [1, 2]}

    assert isinstance(handler, DeferredReceiver)
    assert handler.identity == f"{__name__}:{handler.__qualname__}"
    named = {
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2024, 5, 6),
        "at": datetime.time(7, 8),
        "span": datetime.timedelta(days=1, seconds=2, microseconds=3),
        "amount": decimal.Decimal("19.99"),
        "ref": uuid.UUID(int=42),
        "pair": (1, (2, "x")),
        "tags": {"a", "b"},
        "frozen": frozenset({3}),
        "raw": b"\x00\xff",
        "colour": Colour.BLUE,
        "kind": Shop,
        "nested": {1: [None, 2.5, True], "__tocsin__": "not a tag", "__type__": "uuid"},
        "plain": {"a": [1, "two", None]},
    }
    [(who, result)] = sig.send(sender=Shop, **named)
    assert who is handler
    assert result.get() == {"ok": [1, 2]}
    [(sender, signal, message_id, attempt, received)] = calls
    assert sender is Shop
    assert signal is sig
    assert message_id == result.id
    assert attempt == 0
    assert received == named
    assert {k: type(v) for k, v in received.items()} == {k: type(v) for k, v in named.items()}
    assert received["colour"] is Colour.BLUE


def test_an_argument_that_cannot_travel_is_refused_at_send_naming_it(
    eager_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sig = Signal(name="eager.refused")
    calls: list[Any] = []

    @receiver(sig)
    @deferred(app=eager_app)
    def handler(**named: Any) -> None:
        calls.append(named)

    with pytest.raises(DeferredEncodeError) as info:
        sig.send(sender=None, ok=1, payload=[1, {"x": object()}])
    assert info.value.argument == "payload[1]['x']"
    assert info.value.value_type is object
    assert "argument \"payload[1]['x']\" (a object) cannot travel as JSON" in str(info.value)
    assert "register_codec()" in str(info.value)

    class Local:
        pass

    with pytest.raises(DeferredEncodeError, match=r"the sender \(a type\).*defined in a function"):
        sig.send(sender=Local)
    with pytest.raises(DeferredEncodeError, match="'tocsin_message_id' is reserved"):
        sig.send(sender=None, tocsin_message_id="forged")

    # send_robust: the error is this receiver's response, logged like any other.
    with caplog.at_level(logging.ERROR, logger="tocsin"):
        [(who, error)] = sig.send_robust(sender=None, payload=object())
    assert who is handler
    assert isinstance(error, DeferredEncodeError)
    assert error.argument == "payload"
    assert "Error calling" in caplog.text
    assert calls == []


def test_custom_codecs_extend_what_travels(eager_app: Any) -> None:
    sig = Signal(name="eager.codec")
    seen: list[Any] = []

    @receiver(sig)
    @deferred(app=eager_app)
    def handler(point: Any, **named: Any) -> None:
        seen.append(point)

    with pytest.raises(DeferredEncodeError, match="no codec takes"):
        sig.send(sender=None, point=Point(1, 2))
    register_codec(PointCodec())
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_codec(PointCodec())
        sig.send(sender=None, point=Point(1, 2))
    finally:
        codecs.unregister(PointCodec.tag)
    assert seen == [Point(1, 2)]


def test_decoding_refuses_what_the_encoder_never_makes() -> None:
    context = DecodeContext(codecs)
    bad = [
        {"__tocsin__": "no-such-codec", "v": 1},
        {"__tocsin__": "tuple", "v": [1], "extra": 1},
        {"__tocsin__": "class", "v": "tocsin_never_imported_module:Thing"},
        {"__tocsin__": "class", "v": "os:system"},
        {"__tocsin__": "enum", "v": {"cls": f"{__name__}:Shop", "value": 1}},
        {"__tocsin__": "sqlalchemy", "v": {"cls": f"{__name__}:Shop", "pk": [1]}},
        {"__tocsin__": "decimal", "v": "not a number"},
    ]
    for data in bad:
        with pytest.raises(DeferredDecodeError):
            context.decode(data)
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(DeferredDecodeError, match="deeper"):
        context.decode(deep)
    assert "tocsin_never_imported_module" not in sys.modules


def test_find_class_never_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tocsin_trap_module.py").write_text(
        f"import pathlib\npathlib.Path({str(tmp_path / 'imported')!r}).touch()\nclass Thing: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_class("tocsin_trap_module:Thing") is None
    assert find_class(f"{__name__}:Colour") is Colour
    assert find_class(f"{__name__}:Colour.RED") is None  # a member, not a class
    assert find_class("os:path") is None  # a module, not a class
    assert "tocsin_trap_module" not in sys.modules
    assert not (tmp_path / "imported").exists()


def test_forged_messages_are_rejected_without_importing(
    eager_app: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "tocsin_trap_module.py").write_text(
        f"import pathlib\npathlib.Path({str(tmp_path / 'imported')!r}).touch()\n"
        "class Thing: ...\ndef run(**kwargs): ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sig = Signal(name="eager.forged")
    calls: list[Any] = []

    @receiver(sig)
    @deferred(app=eager_app)
    def handler(sender: Any, signal: Signal, tocsin_message_id: str, **named: Any) -> None:
        calls.append(named)

    @deferred(app=eager_app)
    def never_connected(**named: Any) -> None:
        calls.append(named)

    def envelope(receiver: str, signal: str = "eager.forged", **extra: Any) -> dict[str, Any]:
        return {
            "tocsin": 1,
            "signal": signal,
            "receiver": receiver,
            "sender": None,
            "named": {},
            **extra,
        }

    forged = [
        envelope("tocsin_trap_module:run"),
        envelope(f"{__name__}:Shop"),
        envelope(never_connected.identity),
        envelope(handler.identity, signal="eager.other"),
        envelope(handler.identity, sender={"__tocsin__": "class", "v": "tocsin_trap_module:Thing"}),
        {**envelope(handler.identity), "named": {"tocsin_message_id": "x"}},
        {**envelope(handler.identity), "tocsin": 2},
        "not a message",
    ]
    task = install(eager_app)
    with caplog.at_level(logging.ERROR, logger="tocsin.contrib.celery"):
        results = [task.apply(args=[message]) for message in forged]
    assert [r.state for r in results] == ["REJECTED"] * len(forged)
    assert caplog.text.count("Rejected tocsin message") == len(forged)
    assert calls == []
    assert "tocsin_trap_module" not in sys.modules
    assert not (tmp_path / "imported").exists()
    # The same message with the real identity and signal goes through.
    assert task.apply(args=[envelope(handler.identity)]).state == "SUCCESS"
    assert calls == [{"tocsin_attempt": 0}]


def test_sender_filter_dispatch_uid_and_weak_references_apply(eager_app: Any) -> None:
    sig = Signal(name="eager.filters")
    seen: list[str] = []

    def mail(sender: Any, **named: Any) -> None:
        seen.append("mail")

    def audit(sender: Any, **named: Any) -> None:
        seen.append("audit")

    proxy = connect_deferred(sig, mail, sender=Shop, dispatch_uid="mail", app=eager_app)
    assert isinstance(proxy, DeferredReceiver)
    other = connect_deferred(sig, audit, sender=Shop, dispatch_uid="mail", app=eager_app)
    del proxy, other
    gc.collect()  # connect_deferred holds its proxy strongly
    assert [who.func for who, _ in sig.send(sender=Shop)] == [mail]  # first uid wins
    assert sig.send(sender=Colour) == []  # sender filter
    assert seen == ["mail"]

    weak = deferred(audit, app=eager_app)
    weak.bind(sig)
    sig.connect(weak)  # weak=True: held only by this test
    assert len(sig.send(sender=Colour)) == 1
    del weak
    gc.collect()
    assert sig.send(sender=Colour) == []


def test_misuse_is_reported_clearly(eager_app: Any) -> None:
    sig = Signal(name="eager.misuse")

    def plain(**named: Any) -> None:
        pass

    bare = deferred(plain, app=eager_app)
    sig.connect(bare)
    with pytest.raises(DeferredConfigurationError, match=r"\.bind\(signal\)"):
        sig.send(sender=None)
    bare.bind(sig)
    assert len(sig.send(sender=None)) == 1

    with pytest.raises(DeferredConfigurationError, match="has no name"):

        @receiver(Signal())
        @deferred(app=eager_app)
        def unnamed(**named: Any) -> None:
            pass

    with pytest.raises(TypeError, match="below @receiver"):

        @deferred
        @receiver(Signal(name="eager.throwaway"))
        def wrong_order(**named: Any) -> None:
            pass

    with pytest.raises(TypeError, match="method"):

        class Receivers:
            @deferred
            def method(self, **named: Any) -> None:
                pass

    with pytest.raises(TypeError, match="plain function"):
        deferred(functools.partial(plain))
    with pytest.raises(ValueError, match="Signal receivers must accept keyword arguments"):
        sig.connect(deferred(lambda sender: None))
    with pytest.raises(ValueError, match="on_commit"):
        deferred(plain, on_commit="sometimes")  # type: ignore[arg-type]


def test_install_refuses_an_app_that_accepts_pickle() -> None:
    app = Celery("tocsin-unsafe", set_as_current=False, broker="memory://")
    app.conf.accept_content = ["json", "pickle"]
    with pytest.raises(DeferredConfigurationError, match="pickle"):
        install(app)
    sig = Signal(name="eager.unsafe")

    @receiver(sig)
    @deferred(app=app)
    def handler(**named: Any) -> None:
        pass

    with pytest.raises(DeferredConfigurationError, match="accept JSON"):
        sig.send(sender=None)
    app.close()


def test_retry_policy() -> None:
    policy = RetryPolicy(retry_backoff=0.5, retry_backoff_max=3, retry_jitter=False)
    assert [policy.countdown(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(retry_backoff=True, retry_backoff_max=100)
    assert all(0 <= jittered.countdown(n) <= 2**n for n in range(6) for _ in range(20))
    assert RetryPolicy(retry_backoff=False, retry_delay=7).countdown(5) == 7
    picky = RetryPolicy(autoretry_for=(OSError,), dont_autoretry_for=(TimeoutError,), max_retries=2)
    assert picky.should_retry(OSError(), 0)
    assert picky.should_retry(ConnectionError(), 1)
    assert not picky.should_retry(OSError(), 2)
    assert not picky.should_retry(TimeoutError(), 0)
    assert not picky.should_retry(ValueError(), 0)
    assert RetryPolicy(max_retries=None).should_retry(RuntimeError(), 10**6)
    with pytest.raises(TypeError):
        RetryPolicy(autoretry_for=[Exception])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_deferred_takes_its_retry_policy_as_retry() -> None:
    def plain_receiver(**named: Any) -> None:
        pass

    policy = RetryPolicy(max_retries=5, retry_backoff=2)
    assert deferred(retry=policy)(plain_receiver).retry_policy is policy
    assert deferred(plain_receiver).retry_policy == RetryPolicy()
    hint = re.escape("pass retry=RetryPolicy(max_retries=5, retry_backoff=2) instead of")
    with pytest.raises(TypeError, match=hint):
        deferred(max_retries=5, retry_backoff=2)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"retry=RetryPolicy\(max_retries=5\)"):
        connect_deferred(Signal(name="eager.old_keyword"), plain_receiver, max_retries=5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'retries'"):
        deferred(plain_receiver, retries=5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="takes a RetryPolicy, not 5"):
        deferred(plain_receiver, retry=5)  # type: ignore[call-overload]


def test_eager_retries_until_success(eager_app: Any) -> None:
    sig = Signal(name="eager.retry")
    attempts: list[tuple[str, int]] = []

    @receiver(sig)
    @deferred(
        app=eager_app, retry=RetryPolicy(max_retries=3, retry_backoff=0.01, retry_jitter=False)
    )
    def flaky(tocsin_message_id: str, tocsin_attempt: int, **named: Any) -> str:
        attempts.append((tocsin_message_id, tocsin_attempt))
        if tocsin_attempt < 2:
            raise ConnectionError("try again")
        return "done"

    [(_, result)] = sig.send(sender=None)
    assert result.get() == "done"
    assert [a for _, a in attempts] == [0, 1, 2]
    assert len({m for m, _ in attempts}) == 1


def test_the_worker_applies_the_receivers_sender_filter(
    eager_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sig = Signal(name="eager.sender_filter")
    calls: list[Any] = []

    def for_shop(sender: Any, **named: Any) -> None:
        calls.append(("shop", sender))

    def for_bank(sender: Any, **named: Any) -> None:
        calls.append(("bank", sender))

    def for_seven(sender: Any, **named: Any) -> None:
        calls.append(("seven", sender))

    shop = connect_deferred(sig, for_shop, sender=Shop, app=eager_app)
    bank = connect_deferred(sig, for_bank, sender="bank", app=eager_app)
    seven = connect_deferred(sig, for_seven, sender=7, app=eager_app)
    task = install(eager_app)

    def deliver(proxy: DeferredReceiver, sender: Any) -> str:
        envelope = {
            "tocsin": 1,
            "signal": "eager.sender_filter",
            "receiver": proxy.identity,
            "sender": sender,
            "named": {},
        }
        return str(task.apply(args=[envelope]).state)

    popen = {"__tocsin__": "class", "v": "subprocess:Popen"}  # imported, so it decodes
    assert find_class("subprocess:Popen") is subprocess.Popen
    with caplog.at_level(logging.ERROR, logger="tocsin.contrib.celery"):
        refused = [
            deliver(shop, popen),
            deliver(shop, None),
            deliver(shop, "Shop"),
            deliver(shop, codecs.encode(Colour)),
            deliver(bank, "bank2"),
            deliver(bank, None),
            deliver(bank, codecs.encode(Shop)),
            deliver(seven, 8),
            deliver(seven, "7"),
            deliver(seven, 7.0),
        ]
    assert refused == ["REJECTED"] * len(refused)
    assert calls == []
    assert caplog.text.count("is not connected to 'eager.sender_filter' for the sender") == len(
        refused
    )
    assert 'for the sender {"__tocsin__": "class", "v": "subprocess:Popen"}' in caplog.text
    # What the send itself would reach, the worker runs.
    assert [deliver(shop, codecs.encode(Shop)), deliver(bank, "bank"), deliver(seven, 7)] == [
        "SUCCESS"
    ] * 3
    assert calls == [("shop", Shop), ("bank", "bank"), ("seven", 7)]
    # A receiver for any sender takes any sender.
    anyone = connect_deferred(sig, lambda sender, **named: calls.append(("any", sender)))
    anyone.app = eager_app
    assert deliver(anyone, popen) == "SUCCESS"


def test_install_checks_accept_content_again_when_the_worker_starts() -> None:
    from tocsin.contrib.celery._worker import _on_worker_init

    app = Celery("tocsin-late-pickle", set_as_current=False, broker="memory://")
    install(app, plugins=False)

    class StartingWorker:  # what Celery's worker_init hands its receivers, as sender
        pass

    worker = StartingWorker()
    worker.app = app  # type: ignore[attr-defined]
    _on_worker_init(sender=worker)  # JSON only: starts
    app.conf.accept_content = ["json", "pickle"]
    with pytest.raises(SystemExit, match=r"not starting the Celery worker.*admits pickle"):
        _on_worker_init(sender=worker)
    other = Celery("tocsin-not-installed", set_as_current=False, broker="memory://")
    other.conf.accept_content = ["pickle"]
    worker.app = other  # type: ignore[attr-defined]
    _on_worker_init(sender=worker)  # not tocsin's app: not tocsin's business
    app.close()
    other.close()


class SilentBroker:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.server.settimeout(0.05)
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections.append(connection)  # held open, never read, never answered
        self.server.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent_app() -> Iterator[Any]:
    broker = SilentBroker()
    app = Celery(
        "tocsin-silent",
        set_as_current=False,
        broker=f"redis://:hunter2@127.0.0.1:{broker.port}/0",
    )
    app.silent_port = broker.port  # type: ignore[attr-defined]
    try:
        yield app
    finally:
        broker.close()  # the stuck publishers get an error, in the background
        app.close()


def test_publishing_to_a_broker_that_never_answers_fails_in_bounded_time(
    silent_app: Any,
) -> None:
    sig = Signal(name="eager.silent")
    local: list[str] = []

    @receiver(sig, priority=1)
    @deferred(app=silent_app, publish_timeout=1)
    def mail(**named: Any) -> None:
        pass

    @receiver(sig)
    def count(sender: Any, **named: Any) -> str:
        local.append("ran")
        return "local"

    started = time.monotonic()
    [(first, error), (second, response)] = sig.send_robust(sender=None)
    elapsed = time.monotonic() - started
    assert first is mail
    assert isinstance(error, DeferredPublishError)
    assert isinstance(error, TimeoutError)
    assert (second, response) == (count, "local")  # send_robust carried on
    assert 1 <= elapsed < 5
    message = str(error)
    assert mail.identity in message
    assert f"redis://:**@127.0.0.1:{silent_app.silent_port}/0" in message
    assert "hunter2" not in message
    assert "within 1 s" in message

    started = time.monotonic()
    with pytest.raises(DeferredPublishError, match="did not take the message within 1 s"):
        sig.send(sender=None)
    assert time.monotonic() - started < 5
    assert local == ["ran"]  # send() stopped at the deferred receiver, which runs first


def test_the_publish_timeout_comes_from_the_receiver_the_app_or_the_default(
    silent_app: Any,
) -> None:
    from tocsin.contrib.celery import DEFAULT_PUBLISH_TIMEOUT
    from tocsin.contrib.celery._publish import publish_timeout_of

    def plain(**named: Any) -> None:
        pass

    assert DEFAULT_PUBLISH_TIMEOUT == 10
    proxy = deferred(plain, app=silent_app)
    assert proxy.publish_timeout is None
    assert publish_timeout_of(proxy.publish_timeout, silent_app) == 10
    silent_app.conf.tocsin_publish_timeout = 0.5
    assert publish_timeout_of(proxy.publish_timeout, silent_app) == 0.5
    assert publish_timeout_of(deferred(plain, publish_timeout=3).publish_timeout, silent_app) == 3
    sig = Signal(name="eager.silent_app_setting")
    connect_deferred(sig, proxy)
    started = time.monotonic()
    with pytest.raises(DeferredPublishError, match=r"within 0\.5 s"):
        sig.send(sender=None)
    assert time.monotonic() - started < 4
    for wrong in (0, -1, math.nan, "10", True):
        with pytest.raises(ValueError, match="publish_timeout must be a number of seconds"):
            deferred(plain, publish_timeout=wrong)  # type: ignore[arg-type]
    silent_app.conf.tocsin_publish_timeout = "soon"
    with pytest.raises(ValueError, match=r"app\.conf\.tocsin_publish_timeout"):
        sig.send(sender=None)
    assert deferred(plain, publish_timeout=math.inf).publish_timeout == math.inf


def test_a_send_from_inside_a_task_keeps_its_parent() -> None:
    # The publish runs in a publisher thread; what Celery reads from the sending thread
    # (the task running there) still reaches the message.
    from celery._state import _task_stack

    app = Celery("tocsin-parent", set_as_current=False, broker="memory://")

    @app.task(name="tocsin-test.parent", bind=True)
    def parent(self: Any) -> None:
        pass

    sig = Signal(name="eager.parent")

    # A queue of its own: the memory transport's queues are shared by the whole process.
    @receiver(sig)
    @deferred(app=app, queue="tocsin-test-parent")
    def child(**named: Any) -> None:
        pass

    parent.push_request(id="parent-id", root_id="root-id", called_directly=False)
    _task_stack.push(parent)
    try:
        [(_, result)] = sig.send(sender=None)
        assert parent.request.children == [result]
    finally:
        _task_stack.pop()
        parent.pop_request()
    with app.connection() as connection:
        queue = connection.SimpleQueue("tocsin-test-parent")
        message = queue.get(timeout=5)
        message.ack()
        queue.close()
    assert message.headers["id"] == result.id
    assert (message.headers["parent_id"], message.headers["root_id"]) == ("parent-id", "root-id")
    app.close()


def test_sqlalchemy_on_commit_rollback_and_savepoints(eager_app: Any, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'items.db'}")
    EagerBase.metadata.create_all(engine)
    previous = set_session_factory(sessionmaker(engine), base=EagerBase)
    sig = Signal(name="eager.item_saved")
    seen: list[tuple[str, str, bool]] = []
    sent: dict[str, Item] = {}

    @receiver(sig, sender=Item)
    @deferred(app=eager_app, on_commit=True)
    def saved(instance: Item, token: str, **named: Any) -> None:
        seen.append((token, instance.name, instance is not sent[token]))

    def send(session: Session, name: str, token: str) -> AsyncResult:
        item = sent[token] = Item(name=name)
        session.add(item)
        session.flush()
        [(_, result)] = sig.send(sender=Item, instance=item, token=token)
        return result  # type: ignore[no-any-return]

    try:
        with Session(engine) as session:
            result = send(session, "a", "committed")
            assert isinstance(result, AsyncResult)
            assert seen == []  # not before the commit
            session.commit()
        assert seen == [("committed", "a", True)]  # loaded again, from another session

        with Session(engine) as session:
            send(session, "b", "rolled-back")
            session.rollback()

        with Session(engine) as session:
            send(session, "c", "closed")  # the session closes without a commit

        with Session(engine) as session:
            savepoint = session.begin_nested()
            send(session, "d", "savepoint-rolled-back")
            savepoint.rollback()
            with session.begin_nested():
                send(session, "e", "savepoint-released")
            send(session, "f", "outer")
            assert [t for t, _, _ in seen] == ["committed"]
            session.commit()

        with Session(engine) as session:
            # Not in a transaction: nothing to wait for.
            item = session.get(Item, 1)
            session.commit()
            assert not session.in_transaction()
            sent["outside"] = item  # type: ignore[assignment]
            sig.send(sender=Item, instance=item, token="outside")
        assert [t for t, _, _ in seen] == ["committed", "savepoint-released", "outer", "outside"]
    finally:
        set_session_factory(previous, base=EagerBase)
        engine.dispose()


def test_deferred_post_save_from_the_sqlalchemy_integration(eager_app: Any, tmp_path: Path) -> None:
    # post_save is sent from inside the flush (after_insert), before SQLAlchemy has
    # registered the instance's identity: the codec takes the primary key columns.
    integration = pytest.importorskip("tocsin.contrib.sqlalchemy")
    from tocsin.signals import post_save

    engine = create_engine(f"sqlite:///{tmp_path / 'items.db'}")
    EagerBase.metadata.create_all(engine)
    previous = set_session_factory(sessionmaker(engine), base=EagerBase)
    seen: list[tuple[str, bool, str]] = []

    @receiver(post_save, sender=Item)
    @deferred(app=eager_app, on_commit=True)
    def index_item(instance: Item, created: bool, using: str, **named: Any) -> None:
        seen.append((instance.name, created, using))

    integration.connect_signals(EagerBase)
    try:
        with Session(engine) as session:
            session.add(Item(name="indexed"))
            session.flush()
            assert seen == []
            session.commit()
        assert seen == [("indexed", True, integration.database_alias(engine))]
    finally:
        integration.disconnect_signals(EagerBase)
        post_save.disconnect(index_item, sender=Item)
        set_session_factory(previous, base=EagerBase)
        engine.dispose()


def test_sqlalchemy_instances_need_a_primary_key_and_a_session_factory(
    eager_app: Any, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'items.db'}")
    EagerBase.metadata.create_all(engine)
    sig = Signal(name="eager.item_pk")

    @receiver(sig)
    @deferred(app=eager_app)
    def saved(instance: Item, **named: Any) -> None:
        pass

    with pytest.raises(DeferredEncodeError, match="no primary key yet"):
        sig.send(sender=None, instance=Item(name="new"))
    with Session(engine) as session:
        item = Item(name="x")
        session.add(item)
        session.commit()
        task = install(eager_app)
        envelope = saved.envelope(sig, None, {"instance": item})
        assert envelope["named"] == {
            "instance": {
                "__tocsin__": "sqlalchemy",
                "v": {"cls": f"{__name__}:Item", "pk": [item.id]},
            }
        }
        # No session factory registered for Item: the worker rejects the message.
        assert task.apply(args=[envelope]).state == "REJECTED"
    engine.dispose()


# -- a real Redis, real workers ---------------------------------------------------------


def _token(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name}-{uuid.uuid4().hex[:8]}"


@needs_redis
class TestRealWorker:
    def test_send_runs_the_receiver_in_a_worker(
        self, events: Events, request: pytest.FixtureRequest
    ) -> None:
        from tocsin_celery_testplugin import receivers, signals
        from tocsin_celery_testplugin.models import Order

        token = _token(request)
        named = {
            "token": token,
            "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "amount": decimal.Decimal("9.99"),
            "ids": (1, 2),
            "tags": {"a"},
            "ref": uuid.UUID(int=7),
            "nested": {1: [None, 2.5]},
        }
        [(who, result)] = signals.ping.send(sender=Order, **named)
        assert who is receivers.log_ping
        assert isinstance(result, AsyncResult)
        assert result.get(timeout=15) == "pong"
        [event] = events.wait(kind="ping", token=token)
        assert event["pid"] != os.getpid()
        assert event["worker"] == "main"
        assert event["message_id"] == result.id
        assert event["attempt"] == 0
        assert event["signal"] == "celerytest.ping"
        assert event["sender"][1] == repr(Order)
        assert event["named"] == {k: [type(v).__name__, repr(v)] for k, v in sorted(named.items())}

    def test_async_receivers_run_in_the_worker(
        self, events: Events, request: pytest.FixtureRequest
    ) -> None:
        from tocsin_celery_testplugin import signals

        token = _token(request)
        signals.asynchronous.send(sender=None, token=token)
        [event] = events.wait(kind="async", token=token)
        assert event["worker"] == "main"

    def test_sender_filter_and_dispatch_uid_apply(
        self, events: Events, request: pytest.FixtureRequest
    ) -> None:
        from tocsin_celery_testplugin import receivers, signals
        from tocsin_celery_testplugin.models import Refund

        token = _token(request)
        assert signals.order_saved.send(sender=Refund, token=token) == []
        [(who, _)] = signals.unique.send(sender=None, token=token)
        assert who is receivers.first_unique
        [event] = events.wait(kind="unique", token=token)
        assert event["receiver"] == "first"
        assert events.where(token=token) == [event]

    def test_an_unencodable_argument_enqueues_nothing(
        self, events: Events, request: pytest.FixtureRequest
    ) -> None:
        from tocsin_celery_testplugin import signals

        token = _token(request)
        with pytest.raises(DeferredEncodeError, match="argument 'blob'"):
            signals.ping.send(sender=None, token=token, blob=object())
        signals.ping.send(sender=None, token="sentinel-" + token)
        events.wait(kind="ping", token="sentinel-" + token)
        assert events.where(token=token) == []

    def test_failures_are_retried_with_backoff(
        self, events: Events, request: pytest.FixtureRequest
    ) -> None:
        from tocsin_celery_testplugin import signals

        token = _token(request)
        [(_, result)] = signals.flaky.send(sender=None, token=token, fail_times=2)
        events.wait(kind="flaky-ok", token=token)
        attempts = events.where(kind="flaky", token=token)
        assert [a["attempt"] for a in attempts] == [0, 1, 2]
        assert {a["message_id"] for a in attempts} == {result.id}
        gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.18  # retry_backoff=0.2: 0.2 s, then 0.4 s
        assert gaps[1] >= 0.38
        assert result.get(timeout=10) is None
        assert result.state == "SUCCESS"

    def test_a_final_failure_is_logged_with_signal_receiver_and_arguments(
        self, events: Events, main_worker: Worker, request: pytest.FixtureRequest
    ) -> None:
        from tocsin_celery_testplugin import signals

        token = _token(request)
        [(_, result)] = signals.doomed.send(sender=None, token=token)
        log = main_worker.wait_log(
            f"tocsin_celery_testplugin.receivers:doomed gave up after 2 attempt(s): signal "
            f"'celerytest.doomed', message {result.id}, sender null, arguments "
            f'{{"token": "{token}"}}: ValueError: doomed {token}'
        )
        assert "retrying in 0.10s" in log
        assert isinstance(result.get(timeout=10, propagate=False), ValueError)
        assert result.state == "FAILURE"
        assert [e["attempt"] for e in events.where(kind="doomed", token=token)] == [0, 1]

    def test_forged_and_pickled_messages_are_rejected_and_nothing_is_imported(
        self,
        celery_env: CeleryEnv,
        events: Events,
        main_worker: Worker,
        request: pytest.FixtureRequest,
        tmp_path: Path,
    ) -> None:
        from tocsin_celery_testplugin import signals

        app = celery_env.app(0)
        plugin = "tocsin_celery_testplugin.receivers"

        def envelope(receiver: str, signal: str = "celerytest.ping", sender: Any = None) -> Any:
            return {
                "tocsin": 1,
                "signal": signal,
                "receiver": receiver,
                "sender": sender,
                "named": {},
            }

        forged = {
            "module path": envelope("evil_tocsin_payload:run"),
            "plain function": envelope(f"{plugin}:not_deferred"),
            "unconnected": envelope(f"{plugin}:unconnected"),
            "wrong signal": envelope(f"{plugin}:log_ping", signal="celerytest.other"),
            "uid loser": envelope(f"{plugin}:second_unique", signal="celerytest.unique"),
            "class to import": envelope(
                f"{plugin}:log_ping",
                sender={"__tocsin__": "class", "v": "evil_tocsin_payload:Thing"},
            ),
            "not a message": ["rm", "-rf", "/"],
        }
        ids = {name: app.send_task(TASK_NAME, args=[body]).id for name, body in forged.items()}
        # A pickle that creates a file when loaded (checked here, where it is harmless).
        pickle.loads(pickle.dumps(TouchOnUnpickle(tmp_path / "control")))
        assert (tmp_path / "control").exists()
        hostile = TouchOnUnpickle(celery_env.markers / "unpickled")
        app.send_task(TASK_NAME, args=[hostile], serializer="pickle")

        sentinel = _token(request)
        signals.ping.send(sender=None, token=sentinel)
        events.wait(kind="ping", token=sentinel)  # a FIFO queue: the others came first
        log = main_worker.log()
        for name, message_id in ids.items():
            assert f"Rejected tocsin message {message_id}" in log, name
        refusal = log.partition("Refusing to deserialize untrusted content of type pickle")[2]
        assert "unpickled" in refusal  # Celery dumps the refused body: it is our pickle
        assert sorted(p.name for p in celery_env.markers.iterdir()) == []
        assert events.where(kind="SHOULD-NOT-RUN") == []
        assert [e["token"] for e in events.where(kind="ping")] == [sentinel]

    def test_the_worker_refuses_a_sender_the_receiver_is_not_connected_for(
        self,
        celery_env: CeleryEnv,
        events: Events,
        main_worker: Worker,
        request: pytest.FixtureRequest,
    ) -> None:
        from tocsin_celery_testplugin import receivers, signals

        app = celery_env.app(0)
        token = _token(request)
        receiver_identity = "tocsin_celery_testplugin.receivers:order_saved"  # sender=Order

        def envelope(sender: Any) -> Any:
            return {
                "tocsin": 1,
                "signal": "celerytest.order_saved",
                "receiver": receiver_identity,
                "sender": sender,
                "named": {"token": token},
            }

        forged = {
            "Popen": {"__tocsin__": "class", "v": "subprocess:Popen"},
            "another model": {"__tocsin__": "class", "v": "tocsin_celery_testplugin.models:Refund"},
            "none": None,
            "a string": "Order",
            "a number": 5,
        }
        ids = {name: app.send_task(TASK_NAME, args=[envelope(s)]).id for name, s in forged.items()}
        sentinel = _token(request)
        signals.ping.send(sender=None, token=sentinel)
        events.wait(kind="ping", token=sentinel)  # a FIFO queue: the others came first
        log = main_worker.log()
        for name, message_id in ids.items():
            line = next(
                (x for x in log.splitlines() if f"Rejected tocsin message {message_id}" in x), ""
            )
            assert (
                f"{receiver_identity} is not connected to 'celerytest.order_saved' for the "
                f"sender" in line
            ), (name, line)
        assert events.where(token=token) == []
        assert receivers.order_saved.identity == receiver_identity

    def test_attempts_come_from_the_policy_not_the_message(
        self,
        celery_env: CeleryEnv,
        events: Events,
        main_worker: Worker,
        request: pytest.FixtureRequest,
    ) -> None:
        app = celery_env.app(0)
        token = _token(request)
        body = {
            "tocsin": 1,
            "signal": "celerytest.doomed",
            "receiver": "tocsin_celery_testplugin.receivers:doomed",  # max_retries=1
            "sender": None,
            "named": {"token": token},
        }
        message_id = app.send_task(TASK_NAME, args=[body], retries=-20).id
        log = main_worker.wait_log(
            f"tocsin_celery_testplugin.receivers:doomed gave up after 2 attempt(s): signal "
            f"'celerytest.doomed', message {message_id}"
        )
        assert f"tocsin message {message_id} carries retries=-20, which no sender makes" in log
        assert [e["attempt"] for e in events.where(kind="doomed", token=token)] == [0, 1]

    def test_a_worker_whose_app_admits_pickle_after_install_does_not_start(
        self, celery_env: CeleryEnv
    ) -> None:
        # Running as root, Celery itself refuses pickle; C_FORCE_ROOT lets it go on, as
        # it would for any other user, so that what stops the worker is tocsin's check.
        worker = Worker(
            "pickle",
            celery_env.app(3),
            celery_env.worker_env(3, TOCSIN_TEST_ACCEPT_PICKLE="1", C_FORCE_ROOT="1"),
            celery_env.tmp,
        )
        try:
            returncode = worker.process.wait(60)
        finally:
            worker.stop()
        log = worker.log()
        assert returncode != 0, log
        assert "not starting the Celery worker" in log
        assert "accept_content=['json', 'pickle'], which admits pickle" in log
        assert "celery@" not in log or " ready." not in log  # it never got to consume

    def test_sqlalchemy_on_commit_and_rollback(
        self, celery_env: CeleryEnv, events: Events, request: pytest.FixtureRequest
    ) -> None:
        import time

        from tocsin_celery_testplugin import signals
        from tocsin_celery_testplugin.models import Order

        token = _token(request)
        engine = create_engine(celery_env.sqlite_url)
        try:
            with Session(engine) as session:
                order = Order(label=f"paid-{token}")
                session.add(order)
                session.flush()
                [(_, result)] = signals.order_saved.send(sender=Order, instance=order, token=token)
                assert isinstance(result, AsyncResult)
                time.sleep(0.3)
                assert events.where(token=token) == []  # not enqueued before the commit
                committed_at = time.time()
                session.commit()
                order_id = order.id
            [event] = events.wait(kind="order", token=token)
            assert event["time"] > committed_at
            assert event["message_id"] == result.id
            assert event["instance_type"] == "Order"
            assert (event["id"], event["label"]) == (order_id, f"paid-{token}")  # from the DB
            assert event["pid"] != os.getpid()

            with Session(engine) as session:
                order = Order(label="never")
                session.add(order)
                session.flush()
                signals.order_saved.send(sender=Order, instance=order, token=f"rb-{token}")
                session.rollback()
            with Session(engine) as session:
                session.add(outer := Order(label="outer"))
                session.flush()
                savepoint = session.begin_nested()
                session.add(inner := Order(label="inner"))
                session.flush()
                signals.order_saved.send(sender=Order, instance=inner, token=f"sp-{token}")
                savepoint.rollback()
                signals.order_saved.send(sender=Order, instance=outer, token=f"outer-{token}")
                session.commit()
            events.wait(kind="order", token=f"outer-{token}")
            assert events.where(token=f"rb-{token}") == []
            assert events.where(token=f"sp-{token}") == []
        finally:
            engine.dispose()

    def test_django_on_commit_and_rollback(
        self, celery_env: CeleryEnv, events: Events, request: pytest.FixtureRequest
    ) -> None:
        from tocsin_celery_testplugin import signals

        token = _token(request)
        # Django is configured in a process of its own, never in this one.
        done = subprocess.run(
            [sys.executable, "-m", "tocsin_celery_testplugin.django_sender", token],
            env=celery_env.worker_env(0, TOCSIN_TEST_WORKER="django-sender"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        sent = json.loads(done.stdout)
        assert sent["queued_in_transaction"] == 0
        [event] = events.wait(kind="note", token=f"kept-{token}")
        assert event["message_id"] == sent["kept"]
        assert (event["instance_type"], event["pk"]) == ("Note", sent["kept_pk"])
        assert event["title"] == f"kept-{token}"  # loaded from the database by the worker
        assert event["sender"] == "ModelBase:Note"
        assert event["worker"] == "main"
        signals.ping.send(sender=None, token="sentinel-" + token)
        events.wait(kind="ping", token="sentinel-" + token)
        assert events.where(token=f"dropped-{token}") == []

    def test_disabling_the_plugin_stops_deferral(
        self, events: Events, request: pytest.FixtureRequest
    ) -> None:
        from tocsin_celery_testplugin import receivers, signals

        token = _token(request)
        manager = PluginManager(group="tocsin.celery-test-by-hand", autoload=False)
        manager.register(receivers, name="celery-test")
        owned = {r.receiver for r in manager["celery-test"].receivers if r.connected}
        assert receivers.log_ping in owned
        manager.disable("celery-test")
        try:
            assert signals.ping.send(sender=None, token=f"off-{token}") == []
            assert not signals.ping.has_listeners()
        finally:
            manager.enable("celery-test")
        [(who, _)] = signals.ping.send(sender=None, token=f"on-{token}")
        assert who is receivers.log_ping
        events.wait(kind="ping", token=f"on-{token}")
        assert events.where(token=f"off-{token}") == []

    def test_a_worker_with_the_plugin_disabled_rejects_its_messages(
        self, celery_env: CeleryEnv, events: Events, request: pytest.FixtureRequest
    ) -> None:
        from tocsin_celery_testplugin import signals

        app = celery_env.app(2)
        worker = celery_env.start_worker(
            "disabled", app, db=2, TOCSIN_DISABLED_PLUGINS="celery-test"
        )
        token = _token(request)
        [(_, result)] = signals.ping.send(sender=None, token=token)
        log = worker.wait_log(f"Rejected tocsin message {result.id}")
        assert (
            "no deferred receiver 'tocsin_celery_testplugin.receivers:log_ping' is connected "
            "to a signal named 'celerytest.ping' in this worker" in log
        )
        worker.stop()
        assert events.where(worker="disabled") == []  # the plugin was never imported there

    def test_a_task_of_a_killed_worker_is_redelivered_to_another(
        self, celery_env: CeleryEnv, events: Events, request: pytest.FixtureRequest
    ) -> None:
        from tocsin_celery_testplugin import signals

        app = celery_env.app(1, visibility_timeout=2)
        first = celery_env.start_worker("first", app, db=1, TOCSIN_TEST_VISIBILITY="2")
        token = _token(request)
        [(_, result)] = signals.slow.send(sender=None, token=token)
        [started] = events.wait(kind="slow-started", token=token)
        assert (started["worker"], started["deliveries"]) == ("first", 1)
        first.kill()  # SIGKILL, mid-task: nothing acknowledged the message
        assert not first.alive
        second = celery_env.start_worker("second", app, db=1, TOCSIN_TEST_VISIBILITY="2")
        [done] = events.wait(kind="slow-done", token=token, timeout=30)
        assert done["worker"] == "second"
        assert done["deliveries"] == 2
        assert done["message_id"] == started["message_id"] == result.id
        second.stop()


@needs_redis
def test_two_prefork_workers_follow_the_shared_plugin_state(
    celery_env: CeleryEnv, events: Events, request: pytest.FixtureRequest
) -> None:
    """Issue 17: a plugin switched off in the shared state (Redis here) stops running in
    every worker, between tasks, without a restart; switched on again, it runs again."""
    from tocsin_celery_testplugin import receivers, signals

    state = {"TOCSIN_STATE": celery_env.redis.url(5)}
    app = celery_env.app(3)
    workers = [celery_env.start_worker(name, app, db=3, **state) for name in ("s1", "s2")]

    def switch(action: str) -> None:
        env = celery_env.worker_env(3, **state)
        done = subprocess.run(
            [sys.executable, "-m", "tocsin", "plugins", action, "celery-test", "--reason", "t"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    token = _token(request)
    assert receivers.log_ping in signals.ping.receivers  # the sending side publishes
    switch("disable")
    time.sleep(1.5)  # pushed by pub/sub at once; the interval is the bound
    [(_, result)] = signals.ping.send(sender=None, token=f"off-{token}")
    deadline = time.monotonic() + 15
    while not any(f"Rejected tocsin message {result.id}" in w.log() for w in workers):
        assert time.monotonic() < deadline, "no worker rejected the message"
        time.sleep(0.1)
    assert events.where(token=f"off-{token}") == []

    switch("enable")
    time.sleep(1.5)
    [(_, result)] = signals.ping.send(sender=None, token=f"on-{token}")
    assert result.get(timeout=15) == "pong"
    [event] = events.wait(kind="ping", token=f"on-{token}")
    assert event["worker"] in ("s1", "s2")
    for worker in workers:
        worker.stop()
