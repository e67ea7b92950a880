"""Deferred receivers: a receiver that runs in a Celery worker, not in the sender.

Wrap a receiver with :func:`deferred` and connect the result as usual::

    from tocsin import receiver
    from tocsin.contrib.celery import RetryPolicy, deferred

    @receiver(order_paid, sender=Shop, dispatch_uid="mail-receipt")
    @deferred(on_commit=True, retry=RetryPolicy(max_retries=5))
    def mail_receipt(sender, order, amount, tocsin_message_id, **kwargs):
        ...  # runs in a worker; tocsin_message_id tells a redelivery apart

What is connected is a :class:`DeferredReceiver`, an ordinary receiver to the core: the
sender filter, ``dispatch_uid``, weak references and plugin enable/disable apply to it
exactly as to any other receiver, and the send path is the core's, unchanged.  When a
send reaches it, it encodes the signal's name, its own identity (``module:qualname``),
the sender and the arguments as JSON, enqueues one Celery task, and returns that task's
``AsyncResult`` as its response.  An argument that cannot travel as JSON is refused
right there, with a :class:`DeferredEncodeError` naming the argument: ``send()``
propagates it to the caller; ``send_robust()`` returns it as this receiver's response.

In the worker, one task (``tocsin.deliver``) loads the tocsin plugins once per worker
process, looks the receiver up **only among the deferred receivers connected there to
the named signal** (a message naming anything else is rejected and logged, and nothing
it names is ever imported), decodes the arguments and calls the function as
``func(signal=..., sender=..., tocsin_message_id=..., tocsin_attempt=..., **named)``.

Delivery is at least once: the task is acknowledged late and requeued if its worker is
lost, so a receiver may run more than once for one send; ``tocsin_message_id`` (the
Celery task id, the same on every delivery and retry of one send) lets it notice.

Only JSON travels (the broker is a trust boundary): the task is sent with the JSON
serializer, and :func:`install` refuses an app whose ``accept_content`` admits pickle
or YAML.  Values JSON has no type for travel through a registry of :class:`Codec`\\ s:
tuples, sets, bytes, dates and times, decimals, UUIDs, enums and classes are built in,
and so are model instances, which travel as class path and primary key and are loaded
again in the worker (SQLAlchemy, with the session factory you give
:func:`set_session_factory`; Django, through its app registry).

This package is the ``tocsin[celery]`` extra; it is the only part of tocsin that
imports Celery.
"""

from __future__ import annotations

from tocsin._errors import (
    DeferredConfigurationError,
    DeferredDecodeError,
    DeferredEncodeError,
    DeferredError,
    DeferredPublishError,
    MissingInstanceError,
)
from tocsin.contrib.celery._classes import class_path, find_class
from tocsin.contrib.celery._codec_registry import codecs, register_codec, set_session_factory
from tocsin.contrib.celery._codecs import Codec, CodecRegistry, DecodeContext
from tocsin.contrib.celery._directory import resolve
from tocsin.contrib.celery._models import DjangoModelCodec, SQLAlchemyCodec
from tocsin.contrib.celery._publish import DEFAULT_PUBLISH_TIMEOUT
from tocsin.contrib.celery._receiver import DeferredReceiver, connect_deferred, deferred
from tocsin.contrib.celery._retry import RetryPolicy
from tocsin.contrib.celery._worker import TASK_NAME, install

__all__ = [
    "DEFAULT_PUBLISH_TIMEOUT",
    "TASK_NAME",
    "Codec",
    "CodecRegistry",
    "DecodeContext",
    "DeferredConfigurationError",
    "DeferredDecodeError",
    "DeferredEncodeError",
    "DeferredError",
    "DeferredPublishError",
    "DeferredReceiver",
    "DjangoModelCodec",
    "MissingInstanceError",
    "RetryPolicy",
    "SQLAlchemyCodec",
    "class_path",
    "codecs",
    "connect_deferred",
    "deferred",
    "find_class",
    "install",
    "register_codec",
    "resolve",
    "set_session_factory",
]
