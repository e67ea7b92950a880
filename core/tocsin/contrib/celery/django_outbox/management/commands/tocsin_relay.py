"""``manage.py tocsin_relay [--once]``: publish the deferred receivers' outbox
(``tocsin_outbox``) in a Django database to the broker."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from tocsin.contrib.celery._outbox_common import load_app
from tocsin.contrib.celery.django_outbox import relay_once, run_relay


class Command(BaseCommand):
    help = "Publish the deferred receivers' outbox (tocsin_outbox) to the broker."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help="the database alias of the outbox (default: %(default)s)",
        )
        parser.add_argument(
            "--app",
            metavar="MODULE:ATTR",
            default=None,
            help="the Celery app to publish with (default: Celery's current app, the "
            "one your project's celery module makes)",
        )
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
        parser.add_argument("--batch", type=int, default=100, help="rows claimed at a time")
        parser.add_argument(
            "--keep-published",
            type=float,
            default=None,
            metavar="SECONDS",
            help="keep published rows this long (default: the app's "
            "tocsin_outbox_keep_published, else delete them)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["app"]:
            try:
                app = load_app(options["app"])
            except ValueError as error:
                raise CommandError(str(error)) from None
        else:
            from celery import current_app  # type: ignore[import-untyped, import-not-found, unused-ignore]

            app = current_app._get_current_object()
        relay_options = {"batch": options["batch"], "keep_published": options["keep_published"]}
        using = options["database"]
        if options["once"]:
            published = relay_once(app, using=using, **relay_options)
            self.stdout.write(f"published {published}")
            return
        try:
            run_relay(app, using=using, interval=options["interval"], **relay_options)
        except KeyboardInterrupt:
            pass
