"""Plugin ``test-broken``: fails to import."""

from __future__ import annotations

raise RuntimeError("test-broken fails on import, on purpose")
