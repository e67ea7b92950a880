"""Settings of the bridge tests' Django project (see ../README.md for the environment)."""

from __future__ import annotations

import json
import os

SECRET_KEY = "tocsin-tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]

INSTALLED_APPS = [
    "tocsin.contrib.django",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "blog",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "testproject.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TOCSIN_TEST_DB", ":memory:"),
    }
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# Keep "Internal Server Error" tracebacks of the deliberate failures out of stderr.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.request": {"level": "CRITICAL"}},
}

if "TOCSIN_TEST_SETTINGS" in os.environ:
    TOCSIN = json.loads(os.environ["TOCSIN_TEST_SETTINGS"])

# The process-wide plugin manager made (and loaded) before the tocsin app's ready():
# its settings must still apply.
if os.environ.get("TOCSIN_TEST_TOUCH_MANAGER") in ("create", "load"):
    import tocsin

    manager = tocsin.plugins  # created with the defaults: load everything
    if os.environ["TOCSIN_TEST_TOUCH_MANAGER"] == "load":
        manager.load()
