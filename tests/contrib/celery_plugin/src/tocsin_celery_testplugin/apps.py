"""The Celery configuration the tests' worker and sender share."""

from __future__ import annotations

from celery import Celery


def make_app(broker: str, *, visibility_timeout: int = 3600) -> Celery:
    app = Celery("tocsin-celery-test", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        accept_content=["json"],
        task_serializer="json",
        result_serializer="json",
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Short, so a message a dead worker held comes back quickly.
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": visibility_timeout},
        result_expires=600,
    )
    return app
