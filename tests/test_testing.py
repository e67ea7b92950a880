"""tocsin.testing.override_settings: set, announce, restore."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from typing import Any

import pytest

from tocsin.signals import setting_changed
from tocsin.testing import override_settings


class Settings:
    DEBUG = False  # a class attribute, inherited by instances

    def __init__(self) -> None:
        self.NAME = "prod"


class Slotted:
    __slots__ = ("LEVEL",)

    def __init__(self) -> None:
        self.LEVEL = 1


Event = tuple[Any, str, Any, bool]


@pytest.fixture
def events() -> Iterator[list[Event]]:
    seen: list[Event] = []

    def record(sender: Any, setting: str, value: Any, enter: bool, **kwargs: Any) -> None:
        seen.append((sender, setting, value, enter))

    with setting_changed.connected_to(record):
        yield seen


def test_object_attributes_set_announced_and_restored(events: list[Event]) -> None:
    settings = Settings()
    with override_settings(settings, NAME="test", DEBUG=True, NEW=3) as override:
        assert isinstance(override, override_settings)
        assert (settings.NAME, settings.DEBUG, settings.NEW) == ("test", True, 3)  # type: ignore[attr-defined]
        assert events == [
            (Settings, "NAME", "test", True),
            (Settings, "DEBUG", True, True),
            (Settings, "NEW", 3, True),
        ]
    assert settings.NAME == "prod"
    assert settings.DEBUG is False
    assert "DEBUG" not in vars(settings)  # the inherited class value shows through again
    assert not hasattr(settings, "NEW")
    assert events[3:] == [
        (Settings, "NAME", "prod", False),
        (Settings, "DEBUG", False, False),
        (Settings, "NEW", None, False),  # did not exist before: value None
    ]


def test_mapping_keys(events: list[Event]) -> None:
    config = {"url": "sqlite://", "debug": False}
    with override_settings(config, debug=True, cache="none"):
        assert config == {"url": "sqlite://", "debug": True, "cache": "none"}
    assert config == {"url": "sqlite://", "debug": False}
    assert events == [
        (dict, "debug", True, True),
        (dict, "cache", "none", True),
        (dict, "debug", False, False),
        (dict, "cache", None, False),
    ]


def test_existing_none_value_is_restored_not_removed() -> None:
    config: dict[str, Any] = {"x": None}
    with override_settings(config, x=1):
        assert config == {"x": 1}
    assert config == {"x": None}


def test_class_module_and_slotted_targets(events: list[Event]) -> None:
    module = types.ModuleType("fake_settings")
    module.TIMEOUT = 5  # type: ignore[attr-defined]
    slotted = Slotted()
    with (
        override_settings(Settings, DEBUG=True),
        override_settings(module, TIMEOUT=0),
        override_settings(slotted, LEVEL=9),
    ):
        assert Settings.DEBUG is True
        assert Settings().DEBUG is True
        assert module.TIMEOUT == 0  # type: ignore[attr-defined]
        assert slotted.LEVEL == 9
    assert Settings.DEBUG is False
    assert module.TIMEOUT == 5  # type: ignore[attr-defined]
    assert slotted.LEVEL == 1
    senders = [sender for sender, *_ in events]
    # a class or a module is its own sender; any other object is sent as its class
    assert senders == [Settings, module, Slotted, Slotted, module, Settings]


def test_inherited_class_attribute_on_subclass_is_removed_again() -> None:
    class Child(Settings):
        pass

    with override_settings(Child, DEBUG=True):
        assert Child.DEBUG is True
        assert Settings.DEBUG is False
    assert "DEBUG" not in vars(Child)
    assert Child.DEBUG is False


def test_decorator_sync(events: list[Event]) -> None:
    settings = Settings()

    @override_settings(settings, NAME="decorated")
    def body(x: int) -> tuple[int, str]:
        return x, settings.NAME

    assert body.__name__ == "body"
    assert body(1) == (1, "decorated")
    assert body(2) == (2, "decorated")  # reusable
    assert settings.NAME == "prod"
    assert [enter for *_, enter in events] == [True, False, True, False]


def test_decorator_async(events: list[Event]) -> None:
    settings = Settings()
    received: list[str] = []

    async def async_receiver(sender: Any, setting: str, value: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        received.append(f"{setting}={value}")

    @override_settings(settings, NAME="async")
    async def body() -> str:
        await asyncio.sleep(0)
        return settings.NAME

    assert asyncio.iscoroutinefunction(body)
    with setting_changed.connected_to(async_receiver):
        assert asyncio.run(body()) == "async"
    assert settings.NAME == "prod"
    assert received == ["NAME=async", "NAME=prod"]  # awaited, inside the running loop
    assert [(setting, value, enter) for _, setting, value, enter in events] == [
        ("NAME", "async", True),
        ("NAME", "prod", False),
    ]


def test_async_with(events: list[Event]) -> None:
    config = {"a": 1}

    async def main() -> None:
        async with override_settings(config, a=2):
            assert config["a"] == 2
        assert config["a"] == 1

    asyncio.run(main())
    assert [(value, enter) for _, _, value, enter in events] == [(2, True), (1, False)]


def test_nested_overrides_restore_in_turn(events: list[Event]) -> None:
    settings = Settings()
    with override_settings(settings, NAME="outer", DEBUG=True):
        with override_settings(settings, NAME="inner", EXTRA=1):
            assert (settings.NAME, settings.DEBUG, settings.EXTRA) == ("inner", True, 1)  # type: ignore[attr-defined]
        assert (settings.NAME, settings.DEBUG) == ("outer", True)
        assert not hasattr(settings, "EXTRA")
    assert (settings.NAME, settings.DEBUG) == ("prod", False)
    assert [(s, v, e) for _, s, v, e in events] == [
        ("NAME", "outer", True),
        ("DEBUG", True, True),
        ("NAME", "inner", True),
        ("EXTRA", 1, True),
        ("NAME", "outer", False),
        ("EXTRA", None, False),
        ("NAME", "prod", False),
        ("DEBUG", False, False),
    ]


def test_same_instance_reentered_nests() -> None:
    config = {"v": 0}
    override = override_settings(config, v=1)
    with override:
        config["v"] = 5  # changed by the body: the inner entry saves 5
        with override:
            assert config["v"] == 1
        assert config["v"] == 5
    assert config["v"] == 0


def test_restores_when_body_raises(events: list[Event]) -> None:
    settings = Settings()
    with pytest.raises(KeyError, match="boom"), override_settings(settings, NAME="x", NEW=1):
        raise KeyError("boom")
    assert settings.NAME == "prod"
    assert not hasattr(settings, "NEW")
    assert [enter for *_, enter in events] == [True, True, False, False]

    @override_settings(settings, NAME="y")
    def failing() -> None:
        raise RuntimeError("in decorated")

    with pytest.raises(RuntimeError, match="in decorated"):
        failing()
    assert settings.NAME == "prod"


def test_async_decorated_restores_when_body_raises() -> None:
    config = {"k": "old"}

    @override_settings(config, k="new")
    async def failing() -> None:
        raise ValueError("async boom")

    with pytest.raises(ValueError, match="async boom"):
        asyncio.run(failing())
    assert config == {"k": "old"}


def test_receiver_rejecting_on_enter_restores_everything(events: list[Event]) -> None:
    config = {"a": 1}

    def reject(sender: Any, setting: str, enter: bool, **kwargs: Any) -> None:
        if enter and setting == "b":
            raise ValueError("b is not allowed")

    body_ran = False
    with (
        setting_changed.connected_to(reject),
        pytest.raises(ValueError, match="not allowed"),
        override_settings(config, a=2, b=3),
    ):
        body_ran = True
    assert not body_ran
    assert config == {"a": 1}
    # a announced, b rejected; then both restored and announced
    assert [(s, v, e) for _, s, v, e in events] == [
        ("a", 2, True),
        ("b", 3, True),
        ("a", 1, False),
        ("b", None, False),
    ]


def test_receiver_raising_on_exit_restores_all_then_raises(
    events: list[Event], caplog: pytest.LogCaptureFixture
) -> None:
    config = {"a": 1, "b": 2}

    def fail_on_exit(sender: Any, enter: bool, setting: str, **kwargs: Any) -> None:
        if not enter:
            raise RuntimeError(f"cannot restore {setting}")

    with setting_changed.connected_to(fail_on_exit):
        with (
            pytest.raises(RuntimeError, match="cannot restore a"),
            override_settings(config, a=10, b=20),
        ):
            pass
        assert config == {"a": 1, "b": 2}
        assert [(s, e) for _, s, _, e in events] == [
            ("a", True),
            ("b", True),
            ("a", False),
            ("b", False),
        ]
        assert "cannot restore b" in caplog.text  # the second failure is logged

        # when the body raised, its exception wins and the receiver's is logged
        caplog.clear()
        with pytest.raises(KeyError, match="body"), override_settings(config, a=5):
            raise KeyError("body")
        assert config == {"a": 1, "b": 2}
        assert "cannot restore a" in caplog.text


def test_no_receivers_needed() -> None:
    config = {"a": 1}
    with override_settings(config, a=2):
        assert config["a"] == 2
    assert config["a"] == 1


def test_sync_with_and_async_receivers_outside_a_loop() -> None:
    seen: list[bool] = []

    async def async_receiver(sender: Any, enter: bool, **kwargs: Any) -> None:
        seen.append(enter)

    config = {"a": 1}
    with setting_changed.connected_to(async_receiver), override_settings(config, a=2):
        pass
    assert seen == [True, False]


def test_decorating_a_class_is_refused() -> None:
    with pytest.raises(TypeError, match="decorates functions"):
        override_settings({}, a=1)(Settings)


def test_repr() -> None:
    assert repr(override_settings({"a": 1}, a=2)) == "override_settings({'a': 1}, a=2)"
