"""tocsin.contrib.alembic: a real Alembic project in tmp_path, run through alembic.command.

``alembic init`` writes the project, ``alembic revision`` the two revisions (whose bodies
the fixture fills in), and env.py is the usual online/offline script with the migration
run inside ``migration_signals``.  Every command runs against a SQLite file.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

from tocsin.contrib.alembic import PlanStep
from tocsin.signals import post_migrate, pre_migrate

ENV_PY = """\
from alembic import context
from sqlalchemy import Column, Integer, MetaData, String, Table, engine_from_config, pool

from tocsin.contrib.alembic import migration_signals

config = context.config

target_metadata = MetaData()
Table(
    "widgets",
    target_metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50)),
    Column("colour", String(20)),
)


def remember_step(*, step, **kwargs):
    config.attributes.setdefault("applied_by_env", []).append(step.up_revision_id)


def run_migrations_offline():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with migration_signals(context):
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_online():
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            on_version_apply=remember_step,
        )
        with migration_signals(
            context,
            using=config.attributes.get("using"),
            verbosity=config.attributes.get("verbosity", 1),
        ):
            with context.begin_transaction():
                context.run_migrations()
    connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
"""

BODIES = {
    "0001": (
        """op.create_table(
        "widgets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
    )""",
        'op.drop_table("widgets")',
    ),
    "0002": (
        'op.add_column("widgets", sa.Column("colour", sa.String(20)))',
        """with op.batch_alter_table("widgets") as batch:
        batch.drop_column("colour")""",
    ),
    "0003": (
        """from alembic import context

    if context.config.attributes.get("break"):
        raise RuntimeError("migration 0003 is broken")
    op.create_table("gadgets", sa.Column("id", sa.Integer, primary_key=True))""",
        'op.drop_table("gadgets")',
    ),
}


class Project:
    """An Alembic project on disk, and the SQLite database it migrates."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.database = root / "app.sqlite"
        self.url = f"sqlite:///{self.database}"
        ini = root / "alembic.ini"
        command.init(Config(str(ini)), str(root / "migrations"))
        lines = ini.read_text().splitlines()
        ini.write_text(
            "\n".join(
                f"sqlalchemy.url = {self.url}" if line.startswith("sqlalchemy.url") else line
                for line in lines
            )
            + "\n"
        )
        (root / "migrations" / "env.py").write_text(ENV_PY)
        self.add_revision("0001", "create widgets")
        self.add_revision("0002", "add colour")

    def config(self, **attributes: Any) -> Config:
        cfg = Config(str(self.root / "alembic.ini"))
        cfg.attributes.update(attributes)
        return cfg

    def add_revision(self, rev_id: str, message: str) -> None:
        script = command.revision(self.config(), message, rev_id=rev_id)
        assert script is not None
        assert not isinstance(script, list)
        path = Path(script.path)
        upgrade, downgrade = BODIES[rev_id]
        text = path.read_text()
        for name, body in (("upgrade", upgrade), ("downgrade", downgrade)):
            # The generated body (a docstring or comments, then ``pass``) varies with
            # Alembic's version: replace everything up to the next top-level statement.
            text, found = re.subn(
                rf"(def {name}\(\)[^\n]*:\n)(?:[ \t]+[^\n]*\n|\n)*",
                lambda match, body=body: f"{match.group(1)}    {body}\n\n\n",
                text,
                count=1,
            )
            assert found == 1, text
        path.write_text(text)

    def tables(self) -> set[str]:
        with sqlite3.connect(self.database) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        conn.close()
        return {name for (name,) in rows}

    def version(self) -> str | None:
        if "alembic_version" not in self.tables():
            return None
        with sqlite3.connect(self.database) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        conn.close()
        return None if row is None else str(row[0])


class MigrateEvents:
    """pre_migrate and post_migrate as received, with the tables present at the time."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.items: list[tuple[str, Any, dict[str, Any], set[str]]] = []

    def receiver(self, name: str) -> Any:
        def record(sender: Any, **named: Any) -> None:
            named.pop("signal")
            self.items.append((name, sender, named, self.project.tables()))

        return record

    def plans(self) -> list[tuple[str, list[PlanStep]]]:
        return [(name, named["plan"]) for name, _, named, _ in self.items]

    def clear(self) -> None:
        self.items.clear()


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Project:
    made = Project(tmp_path / "project")
    capsys.readouterr()  # alembic init/revision talk on stdout
    return made


@pytest.fixture
def migrations(project: Project) -> Iterator[MigrateEvents]:
    recorded = MigrateEvents(project)
    with ExitStack() as stack:
        stack.enter_context(pre_migrate.connected_to(recorded.receiver("pre_migrate")))
        stack.enter_context(post_migrate.connected_to(recorded.receiver("post_migrate")))
        yield recorded


def test_upgrade_head_sends_pre_and_post_migrate_with_the_plan(
    project: Project, migrations: MigrateEvents
) -> None:
    cfg = project.config(using="default", verbosity=2)
    command.upgrade(cfg, "head")

    up = [PlanStep("0001", False), PlanStep("0002", False)]
    assert migrations.plans() == [("pre_migrate", up), ("post_migrate", up)]
    (_, pre_sender, pre, pre_tables), (_, post_sender, post, post_tables) = migrations.items
    assert pre_sender is MigrationContext
    assert post_sender is MigrationContext
    for named in (pre, post):
        assert named["using"] == "default"
        assert named["verbosity"] == 2
        assert named["interactive"] is False
        assert named["app_config"] is None
        assert isinstance(named["apps"], MetaData)  # env.py's target_metadata
        assert set(named["apps"].tables) == {"widgets"}
    assert "widgets" not in pre_tables  # sent before the first migration
    assert "widgets" in post_tables  # and after the last, once committed
    assert project.version() == "0002"
    assert cfg.attributes["applied_by_env"] == ["0001", "0002"]  # env.py's own callback


def test_plan_entries_unpack_like_djangos_pairs(
    project: Project, migrations: MigrateEvents
) -> None:
    command.upgrade(project.config(), "head")
    plan = migrations.items[-1][2]["plan"]
    assert [(revision, backwards) for revision, backwards in plan] == [
        ("0001", False),
        ("0002", False),
    ]


def test_nothing_to_do_still_sends_both_with_an_empty_plan(
    project: Project, migrations: MigrateEvents
) -> None:
    command.upgrade(project.config(), "head")
    migrations.clear()
    command.upgrade(project.config(), "head")
    assert migrations.plans() == [("pre_migrate", []), ("post_migrate", [])]


def test_downgrade_plan_is_marked_backwards(project: Project, migrations: MigrateEvents) -> None:
    command.upgrade(project.config(), "head")
    migrations.clear()
    command.downgrade(project.config(), "base")

    down = [PlanStep("0002", True), PlanStep("0001", True)]
    assert migrations.plans() == [("pre_migrate", down), ("post_migrate", down)]
    assert "widgets" in migrations.items[0][3]
    assert "widgets" not in migrations.items[1][3]
    assert project.version() is None


def test_step_by_step(project: Project, migrations: MigrateEvents) -> None:
    command.upgrade(project.config(), "0001")
    command.upgrade(project.config(), "+1")
    command.downgrade(project.config(), "-1")
    assert migrations.plans() == [
        ("pre_migrate", [("0001", False)]),
        ("post_migrate", [("0001", False)]),
        ("pre_migrate", [("0002", False)]),
        ("post_migrate", [("0002", False)]),
        ("pre_migrate", [("0002", True)]),
        ("post_migrate", [("0002", True)]),
    ]
    assert project.version() == "0001"


def test_using_defaults_to_the_database_url(project: Project, migrations: MigrateEvents) -> None:
    command.upgrade(project.config(), "head")
    assert {named["using"] for _, _, named, _ in migrations.items} == {project.url}


def test_pre_migrate_receiver_raising_stops_the_run(
    project: Project, migrations: MigrateEvents
) -> None:
    def refuse(sender: Any, **named: Any) -> None:
        raise PermissionError("not during office hours")

    with pre_migrate.connected_to(refuse), pytest.raises(PermissionError):
        command.upgrade(project.config(), "head")
    assert [name for name, *_ in migrations.items] == ["pre_migrate"]
    assert "widgets" not in project.tables()
    assert project.version() is None


def test_failed_migration_sends_no_post_migrate(
    project: Project, migrations: MigrateEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    project.add_revision("0003", "create gadgets")
    capsys.readouterr()
    command.upgrade(project.config(), "0002")
    migrations.clear()

    with pytest.raises(RuntimeError, match="0003 is broken"):
        command.upgrade(project.config(**{"break": True}), "head")
    assert migrations.plans() == [("pre_migrate", [("0003", False)])]
    assert project.version() == "0002"

    migrations.clear()
    command.upgrade(project.config(), "head")
    assert migrations.plans() == [
        ("pre_migrate", [("0003", False)]),
        ("post_migrate", [("0003", False)]),
    ]


def test_read_only_and_offline_runs_send_nothing(
    project: Project, migrations: MigrateEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    command.upgrade(project.config(), "0001")
    migrations.clear()

    command.current(project.config())
    command.upgrade(project.config(), "0001:head", sql=True)
    output = capsys.readouterr().out
    assert "ALTER TABLE widgets ADD COLUMN colour" in output
    assert migrations.items == []
    assert project.version() == "0001"


def test_stamp_is_not_part_of_the_plan(project: Project, migrations: MigrateEvents) -> None:
    command.stamp(project.config(), "head")
    assert migrations.plans() == [("pre_migrate", []), ("post_migrate", [])]
    assert project.version() == "0002"


def test_needs_a_configured_context() -> None:
    from alembic import context
    from alembic.runtime.environment import EnvironmentContext

    from tocsin.contrib.alembic import migration_signals

    assert not isinstance(context, EnvironmentContext)
    with pytest.raises(RuntimeError, match=r"call context.configure"), migration_signals(context):
        pass
