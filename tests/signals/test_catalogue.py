"""The built-in signal catalogue: every signal, its arguments, and credential cleansing."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import subprocess
import sys
from collections import OrderedDict
from typing import Any

import pytest

import tocsin.signals
from tocsin import Signal
from tocsin.signals import auth
from tocsin.signals.auth import (
    CLEANSED_SUBSTITUTE,
    CredentialsSignal,
    cleanse_credentials,
    user_login_failed,
)

CATALOGUE: dict[str, dict[str, tuple[str, ...]]] = {
    "auth": {
        "user_logged_in": ("request", "user"),
        "user_logged_out": ("request", "user"),
        "user_login_failed": ("credentials", "request"),
    },
    "models": {
        "pre_init": ("args", "kwargs"),
        "post_init": ("instance",),
        "pre_save": ("instance", "raw", "using", "update_fields"),
        "post_save": ("instance", "created", "raw", "using", "update_fields"),
        "pre_delete": ("instance", "using"),
        "post_delete": ("instance", "using"),
        "m2m_changed": ("instance", "action", "reverse", "model", "pk_set", "using"),
        "class_prepared": (),
    },
    "request": {
        "request_started": ("environ", "scope"),
        "request_finished": (),
        "got_request_exception": ("request",),
    },
    "management": {
        "pre_migrate": ("app_config", "verbosity", "interactive", "using", "plan", "apps"),
        "post_migrate": ("app_config", "verbosity", "interactive", "using", "plan", "apps"),
    },
    "testing": {"setting_changed": ("setting", "value", "enter")},
    "db": {"connection_created": ("connection",)},
}

ENTRIES = [
    (family, name, args) for family, signals in CATALOGUE.items() for name, args in signals.items()
]


@pytest.mark.parametrize(("family", "name", "args"), ENTRIES)
def test_signal_declared_with_its_arguments_and_name(
    family: str, name: str, args: tuple[str, ...]
) -> None:
    module = importlib.import_module(f"tocsin.signals.{family}")
    signal = getattr(module, name)
    assert isinstance(signal, Signal)
    assert set(signal.providing_args) == set(args)
    assert len(signal.providing_args) == len(args)
    assert signal.name == f"tocsin.signals.{family}.{name}"
    assert name in module.__all__
    assert getattr(tocsin.signals, name) is signal  # re-exported, the same object


def test_package_exports_exactly_the_catalogue() -> None:
    expected = {name for _, name, _ in ENTRIES}
    assert set(tocsin.signals.__all__) == expected
    assert len(tocsin.signals.__all__) == len(expected)
    namespace: dict[str, Any] = {}
    exec("from tocsin.signals import *", namespace)
    assert expected <= set(namespace)


def test_every_family_module_is_documented() -> None:
    for family in CATALOGUE:
        module = importlib.import_module(f"tocsin.signals.{family}")
        assert module.__doc__
        assert "sends" in module.__doc__ or "send" in module.__doc__


def test_signals_are_distinct_objects() -> None:
    signals = [getattr(tocsin.signals, name) for name in tocsin.signals.__all__]
    assert len({id(s) for s in signals}) == len(signals)


@pytest.mark.parametrize(
    "module", ["tocsin.signals", "tocsin.contrib.wsgi", "tocsin.contrib.asgi", "tocsin.testing"]
)
def test_importing_imports_no_framework(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "heavy = {'django', 'flask', 'werkzeug', 'starlette', 'uvicorn', 'sqlalchemy', "
        "'alembic', 'httpx', 'anyio', 'pluggy'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_request_started_documents_environ_or_scope() -> None:
    module = importlib.import_module("tocsin.signals.request")
    assert "SignalsMiddleware" in (module.__doc__ or "")
    assert "Exactly one of ``environ``" in inspect.getsource(module)


# -- credentials -----------------------------------------------------------------------

SECRETS = {
    "password": "hunter2",
    "PASSWORD": "hunter2",
    "passwd": "x",
    "pass": "x",
    "new_password1": "x",
    "api_key": "x",
    "APIKey": "x",
    "token": "x",
    "access_token": "x",
    "secret": "x",
    "client_secret": "x",
    "signature": "x",
    "Authorization": "Bearer x",
    "auth": "x",
    "credential": "x",
    "private_key": "x",
    "session_cookie": "x",
    "HTTP_COOKIE": "x",
}
PLAIN = {"username": "ada", "email": "ada@example.org", "remember": True, "next": "/home"}


def test_cleanse_masks_every_sensitive_key_and_keeps_the_rest() -> None:
    given = {**SECRETS, **PLAIN}
    cleansed = cleanse_credentials(given)
    assert list(cleansed) == list(given)  # same keys, same order
    for key in SECRETS:
        assert cleansed[key] == CLEANSED_SUBSTITUTE, key
    for key, value in PLAIN.items():
        assert cleansed[key] == value
    assert given == {**SECRETS, **PLAIN}  # the argument is not touched


@pytest.mark.parametrize(
    "pattern", ["password", "passwd", "pass", "token", "secret", "key", "api", "signature"]
)
def test_patterns_cover_djangos_lists(pattern: str) -> None:
    # django.contrib.auth._clean_credentials and the debug view's hidden_settings
    for key in (pattern, pattern.upper(), f"my_{pattern}_field"):
        assert cleanse_credentials({key: "v"}) == {key: CLEANSED_SUBSTITUTE}


def test_mask_is_djangos_string() -> None:
    assert CLEANSED_SUBSTITUTE == "********************"


def test_cleanse_masks_whatever_the_value_and_recurses() -> None:
    cycle: dict[str, Any] = {"name": "loop"}
    cycle["self"] = cycle
    given = {
        "password": None,
        "token": {"nested": "dict"},
        "user": {"name": "ada", "password": "p", "roles": [{"api_key": "k", "id": 1}]},
        "pair": ("a", {"secret": "s"}),
        "cycle": cycle,
        42: "not a str key",
    }
    cleansed = cleanse_credentials(given)
    assert cleansed["password"] == CLEANSED_SUBSTITUTE
    assert cleansed["token"] == CLEANSED_SUBSTITUTE
    assert cleansed["user"] == {
        "name": "ada",
        "password": CLEANSED_SUBSTITUTE,
        "roles": [{"api_key": CLEANSED_SUBSTITUTE, "id": 1}],
    }
    assert cleansed["pair"] == ("a", {"secret": CLEANSED_SUBSTITUTE})
    assert cleansed["cycle"] == {"name": "loop", "self": CLEANSED_SUBSTITUTE}
    assert cleansed[42] == "not a str key"
    assert given["user"]["password"] == "p"  # nested originals untouched too
    assert cleanse_credentials({b"password": "x"}) == {b"password": CLEANSED_SUBSTITUTE}


def test_cleanse_accepts_any_mapping_and_returns_a_dict() -> None:
    cleansed = cleanse_credentials(OrderedDict(password="x", username="u"))
    assert type(cleansed) is dict
    assert cleansed == {"password": CLEANSED_SUBSTITUTE, "username": "u"}


def test_cleanse_refuses_what_it_cannot_cleanse() -> None:
    with pytest.raises(TypeError, match="mapping"):
        cleanse_credentials([("password", "x")])  # type: ignore[arg-type]


def test_user_login_failed_is_a_credentials_signal() -> None:
    assert isinstance(user_login_failed, CredentialsSignal)
    assert isinstance(user_login_failed, Signal)
    # only the four send methods are overridden; the hot path stays the base class's
    overridden = {
        name
        for name, value in vars(CredentialsSignal).items()
        if callable(value) and not name.startswith("__")
    }
    assert overridden == {"send", "send_robust", "asend", "asend_robust"}


def _sync_receivers(seen: list[dict[str, Any]]) -> Any:
    def record(sender: Any, credentials: Any, request: Any, **kwargs: Any) -> str:
        seen.append(credentials)
        return "ok"

    return record


SEND_VARIANTS = ["send", "send_robust", "asend", "asend_robust"]


def _send(variant: str, **named: Any) -> list[tuple[Any, Any]]:
    method = getattr(user_login_failed, variant)
    if variant.startswith("a"):
        return asyncio.run(method("tocsin.tests.backend", **named))  # type: ignore[no-any-return]
    return method("tocsin.tests.backend", **named)  # type: ignore[no-any-return]


@pytest.mark.parametrize("variant", SEND_VARIANTS)
def test_every_send_variant_masks_credentials(variant: str) -> None:
    seen: list[dict[str, Any]] = []
    given = {"username": "ada", "password": "hunter2", "api_token": "t0k3n"}
    snapshot = dict(given)
    with user_login_failed.connected_to(_sync_receivers(seen)):
        responses = _send(variant, credentials=given, request=None)
    assert [r for _, r in responses] == ["ok"]
    assert seen == [
        {"username": "ada", "password": CLEANSED_SUBSTITUTE, "api_token": CLEANSED_SUBSTITUTE}
    ]
    assert seen[0] is not given
    assert given == snapshot  # the sender's dict is not mutated


@pytest.mark.parametrize("variant", SEND_VARIANTS)
def test_async_receivers_see_masked_credentials_too(variant: str) -> None:
    seen: list[Any] = []

    async def record(sender: Any, credentials: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append(credentials)

    with user_login_failed.connected_to(record):
        _send(variant, credentials={"secret": "s", "user": "u"}, request=None)
    assert seen == [{"secret": CLEANSED_SUBSTITUTE, "user": "u"}]


@pytest.mark.parametrize("variant", SEND_VARIANTS)
def test_every_receiver_gets_the_masked_copy(variant: str) -> None:
    # the second receiver must not see anything the first could have restored
    seen: list[Any] = []

    def meddler(sender: Any, credentials: dict[str, Any], **kwargs: Any) -> None:
        seen.append(dict(credentials))
        credentials["password"] = "still hidden from the original"

    def second(sender: Any, credentials: dict[str, Any], **kwargs: Any) -> None:
        seen.append(dict(credentials))

    given = {"password": "hunter2"}
    with user_login_failed.connected_to(meddler), user_login_failed.connected_to(second):
        _send(variant, credentials=given, request=None)
    assert seen[0] == {"password": CLEANSED_SUBSTITUTE}
    assert "hunter2" not in repr(seen)
    assert given == {"password": "hunter2"}


@pytest.mark.parametrize("variant", SEND_VARIANTS)
def test_none_credentials_pass_and_non_mappings_are_refused(variant: str) -> None:
    seen: list[Any] = []
    with user_login_failed.connected_to(_sync_receivers(seen)):
        _send(variant, credentials=None, request=None)
        assert seen == [None]
        with pytest.raises(TypeError, match="mapping"):
            _send(variant, credentials="password=hunter2", request=None)
    assert seen == [None]  # refused before any receiver ran


@pytest.mark.parametrize("variant", SEND_VARIANTS)
def test_sending_without_receivers_still_works(variant: str) -> None:
    assert _send(variant, credentials={"password": "x"}, request=None) == []


def test_robust_send_logs_receiver_errors_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(sender: Any, credentials: Any, **kwargs: Any) -> None:
        raise ValueError(f"bad credentials {credentials!r}")

    with user_login_failed.connected_to(broken):
        responses = user_login_failed.send_robust("backend", credentials={"password": "hunter2"})
    assert isinstance(responses[0][1], ValueError)
    assert "hunter2" not in caplog.text
    assert CLEANSED_SUBSTITUTE in caplog.text


def test_subclassing_keeps_the_signal_usable_elsewhere() -> None:
    signal = CredentialsSignal(
        providing_args=["credentials", "request"], name="custom.login_failed"
    )
    seen: list[Any] = []
    with signal.connected_to(_sync_receivers(seen)):
        signal.send(None, credentials={"token": "x"}, request=None)
    assert seen == [{"token": CLEANSED_SUBSTITUTE}]
    assert auth.SENSITIVE_PATTERNS  # public, documented
