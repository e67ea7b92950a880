"""Send note_saved from a Django process: one send committed, one rolled back.

``python -m tocsin_celery_testplugin.django_sender TOKEN``; prints the message ids as
JSON.  Run in its own process, so the test process never configures Django.
"""

from __future__ import annotations

import json
import os
import sys


class Rollback(Exception):
    pass


def main(token: str) -> None:
    from tocsin_celery_testplugin.apps import make_app
    from tocsin_celery_testplugin.djangoapp.setup import configure

    configure(os.environ["TOCSIN_TEST_DJANGO_DB"])
    make_app(os.environ["TOCSIN_TEST_BROKER"]).set_current()

    from django.db import connection, transaction

    from tocsin_celery_testplugin import receivers, signals
    from tocsin_celery_testplugin.djangoapp.models import Note
    from tocsin_celery_testplugin.recorder import client

    with connection.schema_editor() as editor:
        if Note._meta.db_table not in connection.introspection.table_names():
            editor.create_model(Note)

    out: dict[str, object] = {}
    queued_before = client().llen("celery")
    with transaction.atomic():
        note = Note.objects.create(title=f"kept-{token}")
        [(who, result)] = signals.note_saved.send(sender=Note, instance=note, token=f"kept-{token}")
        assert who is receivers.note_saved
        out["kept"] = result.id
        out["kept_pk"] = note.pk
        # Not published yet: Django runs on_commit callbacks after the commit.
        out["queued_in_transaction"] = client().llen("celery") - queued_before
    try:
        with transaction.atomic():
            note = Note.objects.create(title=f"dropped-{token}")
            [(_, result)] = signals.note_saved.send(
                sender=Note, instance=note, token=f"dropped-{token}"
            )
            out["dropped"] = result.id
            raise Rollback
    except Rollback:
        pass
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
