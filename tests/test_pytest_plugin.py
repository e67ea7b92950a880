"""The pytest plugin (tocsin.pytest_plugin), exercised by pytest itself through pytester.

Each test writes a small test suite and runs it in-process with the plugin loaded
explicitly (``-p tocsin.pytest_plugin``, entry-point autoloading off, so the result is
the same whether or not the ``pytest11`` entry point is installed), with warnings as
errors and ``--strict-markers``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

import pytest

pytest_plugins = ["pytester"]

RunPytest = Callable[..., pytest.RunResult]


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> RunPytest:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")

    def run_pytest(*args: str) -> pytest.RunResult:
        return pytester.runpytest(
            "-p", "tocsin.pytest_plugin", "-W", "error", "--strict-markers", "-v", *args
        )

    return run_pytest


def test_failed_assertion_shows_expected_and_every_send(
    pytester: pytest.Pytester, run: RunPytest
) -> None:
    pytester.makepyfile(
        """
        from tocsin import Signal

        order_paid = Signal(providing_args=["order", "amount"], name="shop.order_paid")


        class Shop:
            pass


        def checkout(amount):
            order_paid.send(Shop, order="A-1", amount=amount)
            order_paid.send_robust(Shop, order="A-2", amount=amount)


        def test_amount(signal_capture):
            paid = signal_capture(order_paid)
            checkout(10.0)
            paid.assert_sent(order="A-1", amount=12.5)
        """
    )
    result = run()
    result.assert_outcomes(failed=1)
    # The traceback ends in the test, not inside tocsin.testing (__tracebackhide__).
    result.stdout.no_fnmatch_line("*tocsin/testing.py*")
    result.stdout.fnmatch_lines(
        [
            "E*AssertionError: Expected <Signal 'shop.order_paid' providing_args=*> to have "
            "been sent with order='A-1', amount=12.5.",
            "*Recorded sends (2), and how each differs:",
            "*#0 send(sender=<class 'test_failed_assertion_shows_expected_and_every_send.Shop'>,"
            " order='A-1', amount=10.0)",
            "*amount: expected 12.5, got 10.0",
            "*#1 send_robust(sender=*order='A-2', amount=10.0)",
            "*order: expected 'A-1', got 'A-2'",
            "*amount: expected 12.5, got 10.0",
        ]
    )


def test_capture_ends_with_the_test(pytester: pytest.Pytester, run: RunPytest) -> None:
    pytester.makepyfile(
        """
        from tocsin import Signal

        ping = Signal(name="inner.ping")


        def test_captures(signal_capture):
            pings = signal_capture(ping, sender="a")
            assert len(ping.receivers) == 1
            ping.send("a", n=1)
            ping.send("b", n=2)
            pings.assert_sent_once(sender="a", n=1)


        def test_recorder_is_gone():
            assert ping.receivers == []
        """
    )
    run().assert_outcomes(passed=2)


def test_plugin_manager_fixture_isolates_connections(
    pytester: pytest.Pytester, run: RunPytest
) -> None:
    pytester.makepyfile(
        """
        import types

        from tocsin import Signal, receiver
        from tocsin.signals import setting_changed

        ping = Signal(name="inner.ping")


        @receiver(ping, weak=False)
        def keeper(sender, **kwargs):
            return "keeper"


        def leaky(sender, **kwargs):
            return "leaky"


        def test_a_connects_and_disconnects(tocsin_plugin_manager):
            ping.connect(leaky, sender="x", weak=False)
            setting_changed.connect(leaky, weak=False)     # a catalogue signal
            ping.disconnect(keeper)
            plugin = types.SimpleNamespace(on_ping=receiver(ping)(leaky))
            tocsin_plugin_manager.register(plugin, name="by-hand")
            assert ping.send("x") == [(leaky, "leaky"), (leaky, "leaky")]  # any, and "x"


        def test_b_sees_what_was_there_before():
            assert ping.receivers == [keeper]
            assert ping.send("x") == [(keeper, "keeper")]
            assert leaky not in setting_changed.receivers
        """
    )
    run().assert_outcomes(passed=2)


def test_plugin_manager_fixture_clears_the_environment(
    pytester: pytest.Pytester, run: RunPytest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOCSIN_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("TOCSIN_PLUGINS", "someone-elses")
    pytester.makepyfile(
        """
        import os

        def test_env(tocsin_plugin_manager, tocsin_plugin_group, tmp_path_factory):
            tocsin_vars = sorted(v for v in os.environ if v.startswith("TOCSIN_"))
            assert tocsin_vars == ["TOCSIN_CACHE_DIR"]
            assert str(tmp_path_factory.getbasetemp()) in os.environ["TOCSIN_CACHE_DIR"]
            assert tocsin_plugin_manager.group == tocsin_plugin_group
            assert tocsin_plugin_group.startswith("tocsin.testplugins.")
            settings = tocsin_plugin_manager.settings()
            assert settings.autoload and settings.allowed is None and not settings.disabled
            assert tocsin_plugin_manager.load() == []
        """
    )
    pytester.makepyprojecttoml('[tool.tocsin]\ndisabled = ["from-the-project"]\n')
    run().assert_outcomes(passed=1)


def test_throwaway_plugin_is_discovered_then_gone(
    pytester: pytest.Pytester, run: RunPytest
) -> None:
    pytester.makepyfile(
        """
        import importlib.metadata
        import sys

        import tocsin
        from tocsin.signals import setting_changed

        SOURCE = '''
            from tocsin import receiver
            from tocsin.signals import setting_changed


            @receiver(setting_changed, dispatch_uid="acme-audit:setting")
            def audit_setting(sender, setting, **kwargs):
                return f"audited {setting}"
        '''


        def test_discovered(tocsin_plugin_manager, tocsin_plugin_dist, tocsin_plugin_group):
            dist = tocsin_plugin_dist(SOURCE, name="acme-audit", version="1.2.3")
            assert dist.name == "acme-audit"
            assert dist.group == tocsin_plugin_group
            assert tocsin_plugin_manager.load() == ["acme-audit"]
            info = tocsin_plugin_manager["acme-audit"]
            assert (info.enabled, info.loaded, info.error) == (True, True, None)
            assert (info.distribution, info.version) == (dist.distribution, "1.2.3")
            assert [r.receiver.__name__ for r in info.receivers] == ["audit_setting"]
            responses = setting_changed.send(object, setting="DEBUG", value=1, enter=True)
            assert "audited DEBUG" in [response for _, response in responses]
            tocsin_plugin_manager.disable("acme-audit")
            responses = setting_changed.send(object, setting="DEBUG", value=1, enter=True)
            assert "audited DEBUG" not in [response for _, response in responses]
            tocsin_plugin_manager.enable("acme-audit")
            assert importlib.metadata.version(dist.distribution) == "1.2.3"


        def test_gone_afterwards():
            names = [getattr(r, "__name__", "") for r in setting_changed.receivers]
            assert "audit_setting" not in names
            assert not [m for m in sys.modules if m.startswith("tocsin_throwaway_")]
            assert not [p for p in sys.path if "tocsin-plugin-dist" in p]
        """
    )
    run().assert_outcomes(passed=2)


def test_plugin_dist_with_options_and_a_manager_with_options(
    pytester: pytest.Pytester, run: RunPytest
) -> None:
    pytester.makepyfile(
        """
        import sys

        import pytest

        SOURCE = '''
            import tocsin_inner_helper
            from tocsin import receiver
            from tocsin.signals import request_started


            class Plugin:
                @receiver(request_started)
                def on_start(self, sender, **kwargs):
                    return tocsin_inner_helper.WORD


            plugin = Plugin()
        '''


        def test_options(tocsin_plugin_dist, tocsin_plugin_manager_factory):
            good = tocsin_plugin_dist(
                SOURCE, name="good", attribute="plugin",
                modules={"tocsin_inner_helper": "WORD = 'hello'"},
            )
            broken = tocsin_plugin_dist("raise RuntimeError('broken on purpose')", name="bad")
            manager = tocsin_plugin_manager_factory(disabled=["bad"])
            assert manager.load() == ["good"]
            assert broken.module not in sys.modules  # disabled: never imported
            from tocsin.signals import request_started
            assert [r for _, r in request_started.send(None)] == ["hello"]
            strict = tocsin_plugin_manager_factory(strict=True)
            with pytest.raises(Exception, match="broken on purpose"):
                strict.load()
            with pytest.raises(TypeError, match="takes no group="):
                tocsin_plugin_dist("", group="elsewhere")


        def test_nothing_left():
            from tocsin.signals import request_started
            assert request_started.send(None) == []
            assert "tocsin_inner_helper" not in sys.modules
        """
    )
    run("-W", "ignore::tocsin.TocsinPluginWarning").assert_outcomes(passed=2)


def test_mute_marker_mutes_setup_call_and_teardown(
    pytester: pytest.Pytester, run: RunPytest
) -> None:
    pytester.makeconftest(
        """
        from tocsin import Signal

        ping = Signal(name="inner.ping")
        pong = Signal(name="inner.pong")
        heard = []


        def record(sender, **kwargs):
            heard.append(sender)


        ping.connect(record, weak=False)
        pong.connect(record, weak=False)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        from conftest import heard, ping, pong


        @pytest.fixture
        def sends_around():
            ping.send("setup")
            yield
            ping.send("teardown")


        @pytest.mark.tocsin_mute(ping, "conftest:pong")
        def test_muted(sends_around):
            ping.send("call")
            pong.send("pong call")
            assert heard == []


        def test_loud_again(mute_signals):
            ping.send("after")
            mute_signals(ping)
            ping.send("muted by the fixture")
            pong.send("pong after")


        def test_last():
            ping.send("last")
            assert heard == ["after", "pong after", "last"]
        """
    )
    run().assert_outcomes(passed=3)


def test_mute_marker_misuse_is_reported(pytester: pytest.Pytester, run: RunPytest) -> None:
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.tocsin_mute()
        def test_nothing_named():
            pass


        @pytest.mark.tocsin_mute("no_such_module_here:signal")
        def test_unimportable():
            pass


        @pytest.mark.tocsin_mute(42)
        def test_not_a_signal():
            pass
        """
    )
    result = run()
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines_random(
        [
            "*@pytest.mark.tocsin_mute on *test_nothing_named names no signal; pass the signals*",
            "*cannot import the signal 'no_such_module_here:signal'*",
            "*42 is not a tocsin Signal; pass Signal objects or their import paths.*",
        ]
    )


def test_marker_is_registered(pytester: pytest.Pytester, run: RunPytest) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.tocsin_mute(*signals): mute these tocsin signals*"])


def test_fixtures_are_listed(pytester: pytest.Pytester, run: RunPytest) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run("--fixtures")
    for name in (
        "signal_capture",
        "mute_signals",
        "tocsin_plugin_manager",
        "tocsin_plugin_manager_factory",
        "tocsin_plugin_dist",
        "tocsin_plugin_group",
    ):
        result.stdout.fnmatch_lines([f"{name}*"])


def test_entry_point_loads_the_plugin(pytester: pytest.Pytester) -> None:
    points = importlib.metadata.entry_points(group="pytest11").select(name="tocsin")
    if not points:
        pytest.skip(
            "the pytest11 entry point 'tocsin' is not installed in this environment "
            "(declare it under [project.entry-points.pytest11] and pip install -e . again)"
        )
    assert [point.value for point in points] == ["tocsin.pytest_plugin"]
    pytester.makepyfile("def test_uses(signal_capture):\n    assert callable(signal_capture)\n")
    pytester.runpytest("-W", "error", "--strict-markers").assert_outcomes(passed=1)
