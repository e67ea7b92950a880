"""Run in a child process by test_django_state.py: a Django project whose shared plugin
state is its database, toggled from the admin and by another writer; prints JSON."""

from __future__ import annotations

import json
import os
import time

os.environ["DJANGO_SETTINGS_MODULE"] = "statesite.settings"

import django

django.setup()

# ruff: noqa: E402  (Django is set up before its models are imported)

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

import tocsin
import tocsin.state

call_command("migrate", verbosity=0)
User.objects.create_superuser("alice", "alice@example.com", "secret")
# migrate ran after ready(): the tables exist now, so read them.
state = tocsin.state.current()
assert state is not None
state.refresh(force=True)
result: dict[str, object] = {"backend": state.backend.description}
result["at_start"] = tocsin.plugins.is_enabled("noisy")

client = Client()
client.force_login(User.objects.get(username="alice"))
answer = client.post(
    "/admin/tocsin/pluginstate/add/", {"name": "noisy", "enabled": "", "reason": "too loud"}
)
result["add"] = answer.status_code
result["after_admin"] = tocsin.plugins.is_enabled("noisy")

# Another process writing the same tables without Django: the SQLite backend.
other = tocsin.state.SharedState(os.environ["STATE_TEST_DB"], background=False)
other.set("noisy", True, "back on", "bob")
time.sleep(state.interval + 0.3)
client.get("/admin/")
result["after_other"] = tocsin.plugins.is_enabled("noisy")

answer = client.post(
    "/admin/tocsin/pluginstate/",
    {"action": "disable_everywhere", "_selected_action": ["noisy"]},
)
result["action"] = answer.status_code
result["after_action"] = tocsin.plugins.is_enabled("noisy")
page = client.get("/admin/tocsin/pluginstatechange/")
result["audit_page"] = [page.status_code, b"too loud" in page.content]
result["history"] = [
    [c.name, c.enabled, c.changed_by, c.reason] for c in tocsin.state.plugin_history()
]
print(json.dumps(result))
