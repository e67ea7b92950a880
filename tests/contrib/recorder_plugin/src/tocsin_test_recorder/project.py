"""Plugin ``test-project``: a receiver moved out of the Django project, for the tocsin
signal the project mirrors from its own Django signal (``blog.signals``)."""

from __future__ import annotations

from typing import Any

from blog.signals import article_published_tocsin

import tocsin
from tocsin_test_recorder._record import record


@tocsin.receiver(article_published_tocsin)
def on_article_published(signal: tocsin.Signal, sender: Any, **named: Any) -> None:
    record("test-project", signal, sender, named)
