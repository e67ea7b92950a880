"""Code written for django.dispatch, with only the import changed, runs on tocsin.

The first test case is written the way Django projects write signal tests
(unittest.TestCase, module-level signals, a tearDown that checks nothing was left
connected), with ``from tocsin import Signal, receiver`` where such code would have
``from django.dispatch import Signal, receiver``.  The second runs one scenario against
both tocsin and the real django.dispatch and compares what can be observed.
"""

# This module is unittest-style on purpose (it is what Django-style projects write).
# ruff: noqa: PT009, PT027

import gc
import logging
import re
import unittest

from tocsin import Signal, receiver

a_signal = Signal()
b_signal = Signal()
c_signal = Signal()
cached_signal = Signal(use_caching=True)

ALL_SIGNALS = (a_signal, b_signal, c_signal, cached_signal)


def echo_val(val, **kwargs):
    return val


def echo_sender(sender, **kwargs):
    return sender


class Article:
    """A sender standing in for a model class."""


class Comment:
    pass


class Callback:
    def __init__(self):
        self.calls = []

    def a(self, val, **kwargs):
        self.calls.append(val)
        return val

    def __call__(self, val, **kwargs):
        return val


class Failure(Exception):
    pass


class DispatchTests(unittest.TestCase):
    def tearDown(self):
        # Every test must leave the module-level signals as it found them.
        gc.collect()
        for signal in ALL_SIGNALS:
            self.assertFalse(signal.has_listeners())
            self.assertEqual(signal.receivers, [])

    def test_connect_send_disconnect(self):
        a_signal.connect(echo_val)
        result = a_signal.send(sender=self, val="test")
        self.assertEqual(result, [(echo_val, "test")])
        self.assertTrue(a_signal.disconnect(echo_val))

    def test_connect_with_sender(self):
        a_signal.connect(echo_val, sender=Article)
        self.assertEqual(a_signal.send(sender=Article, val=1), [(echo_val, 1)])
        self.assertEqual(a_signal.send(sender=Comment, val=1), [])
        self.assertEqual(a_signal.send(sender=None, val=1), [])
        self.assertTrue(a_signal.disconnect(echo_val, sender=Article))

    def test_any_sender(self):
        a_signal.connect(echo_sender)
        self.assertEqual(a_signal.send(sender=Article), [(echo_sender, Article)])
        self.assertEqual(a_signal.send(sender=Comment), [(echo_sender, Comment)])
        a_signal.disconnect(echo_sender)

    def test_garbage_collected_bound_method(self):
        callback = Callback()
        a_signal.connect(callback.a, sender=self)
        self.assertEqual(a_signal.send(sender=self, val="x"), [(callback.a, "x")])
        del callback
        gc.collect()
        self.assertEqual(a_signal.send(sender=self, val="x"), [])

    def test_garbage_collected_callable_instance(self):
        callback = Callback()
        a_signal.connect(callback)
        self.assertEqual(len(a_signal.receivers), 1)
        del callback
        gc.collect()
        self.assertEqual(a_signal.send(sender=self, val="x"), [])

    def test_strong_reference_is_kept(self):
        a_signal.connect(lambda val, **kwargs: val * 2, weak=False)
        gc.collect()
        [(fn, result)] = a_signal.send(sender=self, val=21)
        self.assertEqual(result, 42)
        self.assertTrue(a_signal.disconnect(fn))

    def test_cached_signal_forgets_a_collected_sender(self):
        sender = Article()
        cached_signal.connect(echo_val, sender=sender)
        self.assertEqual(cached_signal.send(sender=sender, val=1), [(echo_val, 1)])
        del sender
        gc.collect()
        self.assertEqual(cached_signal.receivers, [])

    def test_caching_across_senders(self):
        first, second = Article(), Article()
        cached_signal.connect(echo_val, sender=first)
        # Populate the cache for both senders, including "no receivers" for `second`.
        self.assertEqual(cached_signal.send(sender=first, val=1), [(echo_val, 1)])
        self.assertEqual(cached_signal.send(sender=second, val=1), [])
        cached_signal.connect(echo_sender, sender=second)
        self.assertEqual(cached_signal.send(sender=second, val=2), [(echo_sender, second)])
        self.assertEqual(cached_signal.send(sender=first, val=3), [(echo_val, 3)])
        cached_signal.connect(echo_val)
        self.assertEqual(
            cached_signal.send(sender=second, val=4), [(echo_sender, second), (echo_val, 4)]
        )
        self.assertEqual(cached_signal.send(sender=Comment, val=5), [(echo_val, 5)])
        self.assertTrue(cached_signal.disconnect(echo_val, sender=first))
        self.assertEqual(cached_signal.send(sender=first, val=6), [(echo_val, 6)])
        cached_signal.disconnect(echo_val)
        cached_signal.disconnect(echo_sender, sender=second)
        self.assertEqual(cached_signal.send(sender=first, val=7), [])
        self.assertEqual(cached_signal.send(sender=second, val=7), [])

    def test_positional_arguments_in_django_order(self):
        # connect(receiver, sender, weak, dispatch_uid); disconnect(receiver, sender,
        # dispatch_uid), as Django code may pass them.
        a_signal.connect(echo_val, Article, True, "by-position")
        a_signal.connect(echo_sender, Article, False)
        self.assertEqual(a_signal.send(Article, val=1), [(echo_val, 1), (echo_sender, Article)])
        self.assertTrue(a_signal.disconnect(None, Article, "by-position"))
        self.assertTrue(a_signal.disconnect(echo_sender, Article))
        self.assertEqual(a_signal.send(Article, val=1), [])

    def test_multiple_registration(self):
        callback = Callback()
        for _ in range(3):
            a_signal.connect(callback.a)
        self.assertEqual(len(a_signal.receivers), 1)
        self.assertEqual(len(a_signal.send(sender=self, val="test")), 1)
        self.assertEqual(callback.calls, ["test"])
        del callback
        gc.collect()
        self.assertFalse(a_signal.has_listeners())

    def test_dispatch_uid(self):
        def first(**kwargs):
            return "first"

        def second(**kwargs):
            return "second"

        a_signal.connect(first, dispatch_uid="uid")
        a_signal.connect(second, dispatch_uid="uid")
        self.assertEqual(a_signal.send(sender=self), [(first, "first")])
        self.assertEqual(len(a_signal.receivers), 1)
        self.assertTrue(a_signal.disconnect(dispatch_uid="uid"))
        self.assertFalse(a_signal.disconnect(dispatch_uid="uid"))

    def test_send_robust_success(self):
        a_signal.connect(echo_val)
        result = a_signal.send_robust(sender=self, val="test")
        self.assertEqual(result, [(echo_val, "test")])
        a_signal.disconnect(echo_val)

    def test_send_robust_no_receivers(self):
        self.assertEqual(a_signal.send_robust(sender=self, val="test"), [])

    def test_send_robust_ignored_sender(self):
        a_signal.connect(echo_val)
        result = a_signal.send_robust(sender=self, val="test")
        self.assertEqual(result, [(echo_val, "test")])
        a_signal.disconnect(echo_val)

    def test_send_robust_fail(self):
        def fails(val, **kwargs):
            raise Failure("this")

        a_signal.connect(fails)
        try:
            with self.assertLogs("tocsin", "ERROR") as logs:
                result = a_signal.send_robust(sender=self, val="test")
            [(fn, error)] = result
            self.assertIs(fn, fails)
            self.assertIsInstance(error, Failure)
            self.assertEqual(str(error), "this")
            self.assertIsNotNone(error.__traceback__)
            [record] = logs.records
            self.assertEqual(
                record.getMessage(),
                f"Error calling {fails.__qualname__} in Signal.send_robust() (this)",
            )
            self.assertIs(record.exc_info[1], error)
        finally:
            a_signal.disconnect(fails)

    def test_send_propagates(self):
        def fails(val, **kwargs):
            raise Failure("this")

        a_signal.connect(fails)
        try:
            with self.assertRaises(Failure):
                a_signal.send(sender=self, val="test")
        finally:
            a_signal.disconnect(fails)

    def test_disconnection(self):
        one, two, three = Callback(), Callback(), Callback()
        a_signal.connect(one.a)
        a_signal.connect(two.a)
        a_signal.connect(three.a)
        self.assertEqual(len(a_signal.send(sender=self, val=1)), 3)
        self.assertTrue(a_signal.disconnect(one.a))
        self.assertEqual(len(a_signal.send(sender=self, val=1)), 2)
        del two
        gc.collect()
        self.assertEqual(a_signal.send(sender=self, val=1), [(three.a, 1)])
        self.assertTrue(a_signal.disconnect(three.a))

    def test_values_returned_by_disconnection(self):
        callback = Callback()
        a_signal.connect(callback.a)
        try:
            self.assertTrue(a_signal.disconnect(callback.a))
            self.assertFalse(a_signal.disconnect(callback.a))
            self.assertFalse(a_signal.disconnect(echo_val))
        finally:
            a_signal.disconnect(callback.a)

    def test_has_listeners(self):
        self.assertFalse(a_signal.has_listeners())
        self.assertFalse(a_signal.has_listeners(sender=object()))
        callback = Callback()
        a_signal.connect(callback.a)
        self.assertTrue(a_signal.has_listeners())
        self.assertTrue(a_signal.has_listeners(sender=object()))
        a_signal.disconnect(callback.a)
        self.assertFalse(a_signal.has_listeners())
        self.assertFalse(a_signal.has_listeners(sender=object()))

    def test_cannot_connect_no_kwargs(self):
        def no_kwargs(sender):
            pass

        msg = "Signal receivers must accept keyword arguments (**kwargs)."
        with self.assertRaisesRegex(ValueError, re.escape(msg)):
            a_signal.connect(no_kwargs)

    def test_cannot_connect_non_callable(self):
        with self.assertRaisesRegex(TypeError, r"Signal receivers must be callable\."):
            a_signal.connect(object())

    def test_receiver_single_signal(self):
        @receiver(a_signal)
        def on_a(val, **kwargs):
            self.state = val

        self.state = False
        a_signal.send(sender=self, val=True)
        self.assertTrue(self.state)
        self.assertTrue(a_signal.disconnect(on_a))

    def test_receiver_signal_list(self):
        @receiver([a_signal, b_signal, c_signal])
        def on_any(**kwargs):
            self.state.append(kwargs["signal"])

        self.state = []
        a_signal.send(sender=self, val=True)
        b_signal.send(sender=self, val=True)
        c_signal.send(sender=self, val=True)
        self.assertEqual(self.state, [a_signal, b_signal, c_signal])
        for signal in (a_signal, b_signal, c_signal):
            self.assertTrue(signal.disconnect(on_any))

    def test_receiver_with_sender_and_dispatch_uid(self):
        @receiver([a_signal, b_signal], sender=Article, dispatch_uid="on_article")
        def on_article(**kwargs):
            return "article"

        self.assertEqual(a_signal.send(sender=Article), [(on_article, "article")])
        self.assertEqual(b_signal.send(sender=Comment), [])
        self.assertTrue(a_signal.disconnect(sender=Article, dispatch_uid="on_article"))
        self.assertTrue(b_signal.disconnect(sender=Article, dispatch_uid="on_article"))


# -- the same scenario on tocsin and on django.dispatch ----------------------------------


def scenario(signal_class, receiver_decorator):
    """Drive a signal through Django's documented behaviour; return what was observed."""
    Signal, receiver = signal_class, receiver_decorator  # as the code under test names them
    observed = []

    def note(label, value):
        observed.append((label, value))

    def names(responses):
        return [(getattr(r, "__name__", type(r).__name__), v) for r, v in responses]

    class Model:
        pass

    first, second = Model(), Model()
    sig = Signal()
    cached = Signal(use_caching=True)

    def plain(sender, **kwargs):
        return "plain"

    def valued(sender, val=None, **kwargs):
        return ("valued", val)

    def fail(sender, **kwargs):
        raise Failure("boom")

    class Handler:
        def method(self, sender, **kwargs):
            return "method"

    handler = Handler()

    sig.connect(plain)
    sig.connect(valued, sender=first)
    sig.connect(handler.method)
    sig.connect(plain)  # again: no new connection
    note("send first", names(sig.send(sender=first, val=1)))
    note("send second", names(sig.send(sender=second, val=2)))
    note("has_listeners", [sig.has_listeners(), sig.has_listeners(first)])

    sig.connect(valued, dispatch_uid="uid")
    sig.connect(plain, dispatch_uid="uid")  # the uid is taken: ignored
    note("uid send", names(sig.send(sender=second, val=3)))
    note("uid disconnect", [sig.disconnect(dispatch_uid="uid") for _ in range(2)])

    del handler
    gc.collect()
    note("after gc", names(sig.send(sender=first, val=4)))

    sig.connect(fail, sender=second)
    robust = sig.send_robust(sender=second, val=5)
    note("robust", [(n, type(v).__name__, str(v)) for n, v in names(robust)])
    del robust

    note(
        "disconnect",
        [
            sig.disconnect(valued),  # connected for `first` only
            sig.disconnect(valued, sender=first),
            sig.disconnect(valued, sender=first),
            sig.disconnect(fail, sender=second),
            sig.disconnect(plain),
        ],
    )
    note("empty", [sig.send(sender=first), sig.has_listeners(), sig.has_listeners(first)])

    @receiver([sig, cached], sender=first)
    def decorated(sender, **kwargs):
        return "decorated"

    note("decorated", [names(sig.send(sender=first)), names(cached.send(sender=first))])
    note("decorated other", [sig.send(sender=second), cached.send(sender=second)])
    cached.connect(valued, sender=second)
    note("cached second", names(cached.send(sender=second, val=6)))
    cached.connect(plain)
    note("cached any", [names(cached.send(sender=s)) for s in (first, second, Model)])

    def once(sender, **kwargs):
        sig.disconnect(once)
        return "once"

    sig.connect(once)
    note("self-disconnect", [names(sig.send(sender=second)) for _ in range(2)])

    strong = Signal()
    strong.connect(lambda sender, **kwargs: "lambda", weak=False)
    weak = Signal()
    weak.connect(lambda sender, **kwargs: "lambda")
    gc.collect()
    note("weak=False", [names(strong.send(sender=None)), names(weak.send(sender=None))])
    return observed


class SameAsDjangoTests(unittest.TestCase):
    def test_same_scenario_same_results(self):
        from django.dispatch import Signal as DjangoSignal
        from django.dispatch import receiver as django_receiver

        with self.assertLogs(level=logging.ERROR) as django_logs:
            expected = scenario(DjangoSignal, django_receiver)
        with self.assertLogs(level=logging.ERROR) as tocsin_logs:
            observed = scenario(Signal, receiver)
        self.assertEqual(observed, expected)
        # Both log the failing receiver of send_robust with the same message, each
        # under its own logger.
        self.assertEqual(
            [r.getMessage() for r in tocsin_logs.records],
            [r.getMessage() for r in django_logs.records],
        )
        self.assertEqual([r.name.split(".")[0] for r in django_logs.records], ["django"])
        self.assertEqual([r.name.split(".")[0] for r in tocsin_logs.records], ["tocsin"])
        # And the scenario really exercised something.
        self.assertEqual(dict(observed)["uid send"][-1], ("valued", ("valued", 3)))
        self.assertEqual(len(observed), 15)


if __name__ == "__main__":
    unittest.main()


class DjangoStructureTests(unittest.TestCase):
    """The parts of Django's Signal that Django's own tests and projects reach into
    (issue 12): ``lock``, ``_clear_dead_receivers()``, ``receivers`` saved and assigned
    back, ``sender_receivers_cache.clear()``, ``Signal(True)``."""

    def setUp(self):
        self.signal = Signal()

    def test_receivers_read_and_assigned_back_restore_exactly_those_connections(self):
        first = self.signal.connect(echo_val, sender=Article, dispatch_uid="first")
        second = self.signal.connect(echo_sender, weak=False)
        saved = self.signal.receivers
        self.assertEqual(saved, [first, second])
        self.signal.receivers = []
        self.assertEqual(self.signal.send(Article, val=1), [])

        def replacement(**kwargs):
            return "replacement"

        self.signal.connect(replacement)
        self.signal.receivers = saved
        self.assertEqual(self.signal.send(Article, val=1), [(echo_val, 1), (echo_sender, Article)])
        self.assertEqual(self.signal.send(Comment, val=1), [(echo_sender, Comment)])

    def test_a_changed_receivers_list_cannot_be_assigned(self):
        self.signal.connect(echo_val)
        saved = self.signal.receivers
        saved.append(echo_sender)
        with self.assertRaisesRegex(TypeError, "use connect"):
            self.signal.receivers = saved

    def test_lock_and_clear_dead_receivers(self):
        def temporary(**kwargs):
            return None

        self.signal.connect(temporary)
        del temporary
        gc.collect()
        with self.signal.lock:
            self.signal._clear_dead_receivers()
        self.assertEqual(self.signal.registry.connections, {})
        self.assertFalse(self.signal.lock.locked())

    def test_sender_receivers_cache(self):
        self.signal.connect(echo_val, sender=Article)
        self.assertIsNone(self.signal.sender_receivers_cache.get(Article))
        self.signal.send(Article, val=1)
        self.assertEqual(self.signal.sender_receivers_cache.get(Article), (echo_val,))
        self.assertTrue(self.signal.sender_receivers_cache)
        self.signal.sender_receivers_cache.clear()
        self.assertFalse(self.signal.sender_receivers_cache)
        self.assertEqual(self.signal.send(Article, val=2), [(echo_val, 2)])

    def test_positional_use_caching(self):
        signal = Signal(True)
        self.assertIs(signal.use_caching, True)
        self.assertEqual(signal.providing_args, ())


class ReceiverDecoratorTests(unittest.TestCase):
    """``receiver`` follows Django's rule: a list or tuple is each of its signals,
    anything else is asked to ``connect``, with exactly the options given."""

    def test_a_django_signal_takes_a_tocsin_receiver(self):
        from django.dispatch import Signal as DjangoSignal

        django_signal = DjangoSignal()

        @receiver(django_signal, sender=Article)
        def on_django(sender, **kwargs):
            return "django"

        self.assertEqual(django_signal.send(Article), [(on_django, "django")])
        self.assertFalse(hasattr(on_django, "__tocsin_receivers__"))

    def test_a_subclass_with_djangos_connect_signature_gets_only_the_given_options(self):
        calls = []

        class ModelLikeSignal(Signal):
            def connect(self, receiver, sender=None, weak=True, dispatch_uid=None, apps=None):
                calls.append({"sender": sender, "weak": weak, "apps": apps})
                return super().connect(receiver, sender, weak, dispatch_uid)

        signal = ModelLikeSignal()

        @receiver(signal, sender=Article, apps="registry")
        def on_model(sender, **kwargs):
            return "model"

        @receiver((signal, a_signal))
        def on_both(sender, **kwargs):
            return "both"

        try:
            self.assertEqual(
                calls,
                [
                    {"sender": Article, "weak": True, "apps": "registry"},
                    {"sender": None, "weak": True, "apps": None},
                ],
            )
            self.assertEqual(signal.send(Article), [(on_model, "model"), (on_both, "both")])
            self.assertEqual(a_signal.send(None), [(on_both, "both")])
        finally:
            a_signal.disconnect(on_both)

    def test_options_tocsins_connect_does_not_take_are_refused_up_front(self):
        with self.assertRaisesRegex(TypeError, "unexpected option"):
            receiver(a_signal, apps="registry")

    def test_the_decorator_used_without_a_signal_says_how_to_use_it(self):
        def handler(sender, **kwargs):
            return None

        with self.assertRaisesRegex(TypeError, r"Write @receiver\(some_signal\)"):
            receiver(handler)
