"""A receiver still connected to the project's Django signal (not yet moved)."""

from __future__ import annotations

import json
import os
from typing import Any

from django.dispatch import receiver

from blog.signals import article_published


@receiver(article_published, dispatch_uid="blog.legacy-published")
def legacy_published(sender: Any, article: Any, **kwargs: Any) -> None:
    entry = {"by": "django-legacy", "signal": "article_published", "article": article.pk}
    with open(os.environ["TOCSIN_TEST_RECORD"], "a", encoding="utf-8") as file:
        file.write(json.dumps(entry) + "\n")
