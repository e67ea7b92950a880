"""The worker's app module: ``celery -A tocsin_celery_testplugin.worker worker``.

Configured from the environment by the tests.  Loading the plugins is tocsin's job
(``install`` loads them in each worker process); this module only sets up Celery and
what the codecs need to load model instances.
"""

from __future__ import annotations

import os

from tocsin.contrib.celery import install, set_session_factory
from tocsin_celery_testplugin.apps import make_app

app = make_app(
    os.environ["TOCSIN_TEST_BROKER"],
    visibility_timeout=int(os.environ.get("TOCSIN_TEST_VISIBILITY", "3600")),
)
app.set_current()
install(app)

if os.environ.get("TOCSIN_TEST_ACCEPT_PICKLE"):
    # A setting changed after install(), which checked it: the worker must not start.
    app.conf.accept_content = ["json", "pickle"]

if os.environ.get("TOCSIN_TEST_SQLA_URL"):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    set_session_factory(sessionmaker(create_engine(os.environ["TOCSIN_TEST_SQLA_URL"])))

if os.environ.get("TOCSIN_TEST_DJANGO_DB"):
    from tocsin_celery_testplugin.djangoapp.setup import configure

    configure(os.environ["TOCSIN_TEST_DJANGO_DB"])
