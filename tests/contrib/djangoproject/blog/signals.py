"""The project's own Django signal, mirrored to tocsin so that its receivers can move
into plugins one at a time (the ``test-project`` plugin receives the tocsin one)."""

from __future__ import annotations

from django.dispatch import Signal

from tocsin.contrib.django import mirror

article_published = Signal()
article_published_tocsin = mirror(article_published, name="blog.article_published")
