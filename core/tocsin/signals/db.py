"""Database wrapper signals, as ``django.db.backends.signals`` declares them.

Who sends it:

* :mod:`tocsin.contrib.sqlalchemy`, for each new DBAPI connection of an engine wired
  with ``connect_signals(engine)`` (sender: the engine's dialect class; it adds
  ``using``, the engine's alias);
* :mod:`tocsin.contrib.django`, relaying Django's own ``connection_created`` (sender:
  the database wrapper class).
"""

from __future__ import annotations

from tocsin._signal import Signal

__all__ = ["connection_created"]

#: Sent when a new database connection has been opened.  ``sender``: the class of the
#: database wrapper (or engine); ``connection``: the connection just opened.
connection_created = Signal(
    providing_args=["connection"], name="tocsin.signals.db.connection_created"
)

# What integrations send beyond the documented arguments, so that a receiver requiring
# it is not refused at connect (the check of issue 16): tocsin.contrib.sqlalchemy adds
# using= (the engine's alias).
connection_created.registry.also_provides("using")
