"""Model signals, as ``django.db.models.signals`` declares them.

Who sends them:

* :mod:`tocsin.contrib.sqlalchemy`, for the models wired with ``connect_signals()``:
  every signal here, from SQLAlchemy's ORM events (its module documentation says
  which event sends which signal, and where SQLAlchemy differs from Django);
* :mod:`tocsin.contrib.django`, relaying Django's own, with Django's senders and
  arguments;
* your own persistence code, which may send them too: receivers written against
  Django's names work unchanged.
"""

from __future__ import annotations

from tocsin._signal import Signal

__all__ = [
    "class_prepared",
    "m2m_changed",
    "post_delete",
    "post_init",
    "post_save",
    "pre_delete",
    "pre_init",
    "pre_save",
]

_SAVE_ARGS = ["instance", "raw", "using", "update_fields"]

#: Sent at the start of a model's ``__init__``.  ``sender``: the model class;
#: ``args``: the positional arguments; ``kwargs``: the keyword arguments.
pre_init = Signal(providing_args=["args", "kwargs"], name="tocsin.signals.models.pre_init")

#: Sent at the end of a model's ``__init__``.  ``sender``: the model class;
#: ``instance``: the instance just initialised.
post_init = Signal(providing_args=["instance"], name="tocsin.signals.models.post_init")

#: Sent at the start of saving.  ``sender``: the model class; ``instance``: what is
#: saved; ``raw``: True when saved exactly as given (fixture loading); ``using``: the
#: database alias; ``update_fields``: the fields to update, or None for all.
pre_save = Signal(providing_args=_SAVE_ARGS, name="tocsin.signals.models.pre_save")

#: Like ``pre_save``, sent at the end of saving, with ``created``: True if a new
#: record was inserted.
post_save = Signal(
    providing_args=["instance", "created", "raw", "using", "update_fields"],
    name="tocsin.signals.models.post_save",
)

#: Sent at the start of deleting an instance.  ``sender``: the model class;
#: ``instance``: what is deleted; ``using``: the database alias.
pre_delete = Signal(providing_args=["instance", "using"], name="tocsin.signals.models.pre_delete")

#: Like ``pre_delete``, sent once the instance is gone from the database.
post_delete = Signal(providing_args=["instance", "using"], name="tocsin.signals.models.post_delete")

#: Sent when a many-to-many relation changes.  ``sender``: the intermediate model;
#: ``instance``: the instance whose relation changed; ``action``: "pre_add",
#: "post_add", "pre_remove", "post_remove", "pre_clear" or "post_clear"; ``reverse``:
#: True when changed from the reverse side; ``model``: the class of the objects added
#: or removed; ``pk_set``: their primary keys (None for clears); ``using``: the alias.
m2m_changed = Signal(
    providing_args=["instance", "action", "reverse", "model", "pk_set", "using"],
    name="tocsin.signals.models.m2m_changed",
)

#: Sent once a model class has been defined and registered.  ``sender``: the class.
class_prepared = Signal(providing_args=[], name="tocsin.signals.models.class_prepared")

# What integrations send beyond the documented arguments, so that a receiver requiring
# it is not refused at connect (the check of issue 16): Django (4.1+) adds origin= to
# the delete signals it sends.
pre_delete.registry.also_provides("origin")
post_delete.registry.also_provides("origin")
