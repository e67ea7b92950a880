"""Database wrapper signals, as ``django.db.backends.signals`` declares them.

Who sends it: a database integration, when it opens a connection.  No integration
shipped in this distribution sends it yet (the project plans SQLAlchemy hooks).
"""

from __future__ import annotations

from tocsin._signal import Signal

__all__ = ["connection_created"]

#: Sent when a new database connection has been opened.  ``sender``: the class of the
#: database wrapper (or engine); ``connection``: the connection just opened.
connection_created = Signal(
    providing_args=["connection"], name="tocsin.signals.db.connection_created"
)
