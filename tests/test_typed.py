"""Typed signals: what the type checker enforces (mypy --strict over snippets), and
what a typed signal is at run time."""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tocsin import Signal, TypedSignal, receiver

SNIPPETS = Path(__file__).parent / "typecheck_snippets"


def mypy(tmp_path: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--show-error-codes",
            "--no-error-summary",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def checked(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("mypy")
    return {name: mypy(tmp / name, SNIPPETS / f"{name}.py") for name in ("accepted", "rejected")}


def test_well_typed_code_passes_mypy_strict(checked: dict[str, Any]) -> None:
    result = checked["accepted"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_mypy_reports_exactly_the_marked_mistakes(checked: dict[str, Any]) -> None:
    source = (SNIPPETS / "rejected.py").read_text().splitlines()
    expected = {
        (number, match.group(1))
        for number, line in enumerate(source, start=1)
        if (match := re.search(r"# E: ([\w-]+)", line))
    }
    assert len(expected) == 10
    result = checked["rejected"]
    reported = {
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"rejected\.py:(\d+): error: .*\[([\w-]+)\]$", result.stdout, re.M)
    }
    assert reported == expected, result.stdout


class Shop:
    pass


def test_a_typed_signal_is_named_and_documented_by_its_prototype() -> None:
    @Signal.typed
    def order_paid(sender: type[Shop], *, order: str, amount: Decimal, **extra: Any) -> None:
        """Sent when an order has been paid."""

    assert isinstance(order_paid, TypedSignal)
    assert isinstance(order_paid, Signal)
    assert order_paid.providing_args == ("order", "amount")
    assert order_paid.name == f"{__name__}.{order_paid.prototype.__qualname__}"
    assert order_paid.__doc__ == "Sent when an order has been paid."
    assert repr(order_paid).startswith("<Signal '")


def test_a_typed_signal_sends_like_any_signal() -> None:
    @Signal.typed
    def order_paid(sender: type[Shop], *, order: str) -> None: ...

    seen = []

    @receiver(order_paid, sender=Shop)
    def record(sender: type[Shop], *, order: str, **kwargs: Any) -> str:
        seen.append((sender, order, kwargs["signal"]))
        return order.upper()

    assert order_paid.send(Shop, order="a-1") == [(record, "A-1")]
    assert seen == [(Shop, "a-1", order_paid)]
    assert order_paid.send(object, order="a-2") == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prototype", "message"),
    [
        (lambda: None, "must take the sender first"),
        (lambda source, **kw: None, "must take the sender first"),
        (lambda sender, order: None, None),
        (lambda sender, *orders: None, "keyword arguments; put them after a '\\*'"),
        ("order_paid", "takes a prototype function"),
    ],
)
def test_bad_prototypes_are_refused_with_what_to_write(prototype: Any, message: str | None) -> None:
    if message is None:
        assert Signal.typed(prototype).providing_args == ("order",)
        return
    with pytest.raises(TypeError, match=message):
        Signal.typed(prototype)


def test_positional_only_parameters_are_refused() -> None:
    def order_paid(sender: object, order: str, /) -> None: ...

    with pytest.raises(TypeError, match="signal arguments are keyword arguments"):
        Signal.typed(order_paid)
