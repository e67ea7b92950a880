"""Management signals, as ``django.db.models.signals`` declares ``pre_migrate`` and
``post_migrate``.

Who sends them:

* :mod:`tocsin.contrib.alembic`: :func:`~tocsin.contrib.alembic.migration_signals`
  around an Alembic run in ``env.py`` (``plan`` lists the revisions, ``apps`` is the
  ``target_metadata``);
* :mod:`tocsin.contrib.django`, relaying Django's own, which ``migrate`` sends per
  application.
"""

from __future__ import annotations

from tocsin._signal import Signal

__all__ = ["post_migrate", "pre_migrate"]

_MIGRATE_ARGS = ["app_config", "verbosity", "interactive", "using", "plan", "apps"]

#: Sent before an application's migrations run.  ``sender`` and ``app_config``: the
#: application being migrated; ``verbosity``: how much to print; ``interactive``:
#: whether prompting is allowed; ``using``: the database alias; ``plan``: the list of
#: ``(migration, backwards)`` pairs about to run; ``apps``: the state before the run.
pre_migrate = Signal(providing_args=_MIGRATE_ARGS, name="tocsin.signals.management.pre_migrate")

#: Sent after a migration run (even one that ran nothing); arguments as for
#: ``pre_migrate``.  Receivers must not alter the schema.
post_migrate = Signal(providing_args=_MIGRATE_ARGS, name="tocsin.signals.management.post_migrate")

# What integrations send beyond the documented arguments, so that a receiver requiring
# it is not refused at connect (the check of issue 16): Django's migrate command adds
# stdout=.
pre_migrate.registry.also_provides("stdout")
post_migrate.registry.also_provides("stdout")
