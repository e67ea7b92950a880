"""Send ``pre_migrate`` and ``post_migrate`` around Alembic migration runs.

In your ``env.py`` (``pip install tocsin[sqlalchemy]``, which brings Alembic), put the
migration run inside :func:`migration_signals`, after ``context.configure()``::

    from alembic import context
    from tocsin.contrib.alembic import migration_signals

    def run_migrations_online() -> None:
        connectable = engine_from_config(config.get_section(config.config_ini_section, {}))
        with connectable.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata)
            with migration_signals(context, using="default"):
                with context.begin_transaction():
                    context.run_migrations()

What is sent (``sender``: the ``sender`` you pass, else ``app_config`` when you pass
one, else Alembic's :class:`~alembic.runtime.migration.MigrationContext` class):

``pre_migrate(sender, app_config, verbosity, interactive, using, plan, apps)``
    inside ``context.run_migrations()``, once Alembic has worked out the steps and
    before the first one runs.  ``plan`` is the list of steps about to run, each a
    :class:`PlanStep` ``(revision, backwards)``: the revision id and, as in Django's
    ``(migration, backwards)`` pairs, True when it is rolled back (a downgrade).  A
    receiver that raises stops the run before any migration is applied.
``post_migrate(...)`` (same arguments)
    when the ``with`` block ends without an exception, so after the transaction
    commits when the block encloses ``context.begin_transaction()`` as above.  ``plan``
    lists the steps actually applied, as Alembic reported them one by one through its
    ``on_version_apply`` callback.  If the run fails, the exception propagates and
    ``post_migrate`` is not sent (Django does not send it either).

Both are sent, with an empty plan, when there is nothing to do (as Django does).
Stamps (``alembic stamp``) apply no migration and are left out of ``plan``.  Nothing is
sent for commands that only read (``alembic current``, whose run Alembic marks
``dont_mutate``), for offline runs (``--sql``, which only print SQL), or when the block
never calls ``context.run_migrations()``.

The other arguments: ``verbosity`` (default 1) and ``interactive`` (default False) are
whatever you pass; ``using`` is what you pass, else the connection's alias from
:func:`tocsin.contrib.sqlalchemy.database_alias` (its URL without the password);
``apps`` is what you pass, else the ``target_metadata`` given to
``context.configure()`` (a :class:`~sqlalchemy.schema.MetaData`, or None): Alembic has
no application registry, and the MetaData is the closest thing to Django's ``apps``
(it describes the current models, not the historical state Django passes);
``app_config`` is an opaque value of your choosing naming what is migrated (Django
passes the ``AppConfig``), None by default.

How: the helper wraps the migration context's step function (Alembic's private
``MigrationContext._migrations_fn``, called exactly once as usual) to see the plan and
send ``pre_migrate``, and adds an ``on_version_apply`` callback for the steps applied;
both are restored when the block ends.  A callback you passed to ``configure()`` keeps
running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol

from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy.engine import Connection, Engine

from tocsin.contrib.sqlalchemy import database_alias
from tocsin.signals.management import post_migrate, pre_migrate

__all__ = ["MigrationRun", "PlanStep", "migration_signals"]


class PlanStep(NamedTuple):
    """One step of a migration plan: ``(revision, backwards)``, like Django's pairs."""

    revision: str
    backwards: bool


class _HasMigrationContext(Protocol):
    def get_context(self) -> MigrationContext: ...


class MigrationRun:
    """What :func:`migration_signals` yields: the plan, as it becomes known."""

    def __init__(self) -> None:
        #: The steps Alembic was about to run (set just before ``pre_migrate``).
        self.planned: list[PlanStep] = []
        #: The steps applied so far, in order.
        self.applied: list[PlanStep] = []
        #: Whether ``pre_migrate`` was sent (the run started).
        self.started = False

    def on_version_apply(self, *, step: MigrationInfo, **kwargs: Any) -> None:
        """Alembic's ``on_version_apply`` callback: record the step just applied."""
        self.applied.extend(_plan_of([step]))


def _plan_of(infos: Iterable[MigrationInfo]) -> list[PlanStep]:
    return [
        PlanStep(info.up_revision_id, not info.is_upgrade)
        for info in infos
        if not info.is_stamp and info.up_revision_id is not None
    ]


@contextmanager
def migration_signals(
    context: _HasMigrationContext | MigrationContext,
    *,
    using: str | None = None,
    verbosity: int = 1,
    interactive: bool = False,
    apps: Any = None,
    app_config: Any = None,
    sender: Any = None,
) -> Iterator[MigrationRun]:
    """Send ``pre_migrate`` / ``post_migrate`` around the ``context.run_migrations()``
    called inside the block (see the module documentation).

    *context* is ``alembic.context`` in ``env.py`` (or a configured
    :class:`~alembic.runtime.migration.MigrationContext`); ``context.configure()``
    must have been called.
    """
    if isinstance(context, MigrationContext):
        migration_context = context
    else:
        try:
            migration_context = context.get_context()
        except Exception as error:
            raise RuntimeError(
                "migration_signals() needs a configured migration context: call "
                "context.configure(...) before entering it."
            ) from error
    run = MigrationRun()
    if migration_context.as_sql or migration_context.opts.get("dont_mutate", False):
        yield run  # offline SQL generation, or a read-only command: nothing to signal
        return

    if apps is None:
        apps = migration_context.opts.get("target_metadata")
    if sender is None:
        sender = app_config if app_config is not None else MigrationContext
    if using is None:
        using = _alias(migration_context)
    named: dict[str, Any] = {
        "app_config": app_config,
        "verbosity": verbosity,
        "interactive": interactive,
        "using": using,
        "apps": apps,
    }

    original_steps = migration_context._migrations_fn
    original_callbacks = migration_context.on_version_apply_callbacks

    def steps_then_pre_migrate(heads: Any, ctx: MigrationContext) -> list[Any]:
        assert original_steps is not None
        steps = list(original_steps(heads, ctx))
        run.planned = _plan_of(step.info for step in steps)
        run.started = True
        pre_migrate.send(sender, plan=list(run.planned), **named)
        return steps

    wrapped: Callable[..., Iterable[Any]] | None = (
        steps_then_pre_migrate if original_steps is not None else None
    )
    migration_context._migrations_fn = wrapped
    migration_context.on_version_apply_callbacks = (
        *original_callbacks,
        run.on_version_apply,
    )
    try:
        yield run
    finally:
        migration_context._migrations_fn = original_steps
        migration_context.on_version_apply_callbacks = original_callbacks
    if run.started:
        post_migrate.send(sender, plan=list(run.applied), **named)


def _alias(migration_context: MigrationContext) -> str:
    connection = migration_context.connection
    if isinstance(connection, (Connection, Engine)):
        return database_alias(connection)
    return migration_context.dialect.name
