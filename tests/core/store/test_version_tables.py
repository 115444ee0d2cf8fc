"""Our migrations and Optuna's share one database: each Alembic history keeps its revision in its own table.

A database written before ``fewshot_alembic_version`` existed keeps our revision in ``alembic_version``, the table
Optuna's storage reads as its own; upgrading moves it, after which an Optuna study can be created in the same file.
"""

from __future__ import annotations

import optuna
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from core.store import Store
from core.store.database import (
    LEGACY_VERSION_TABLE,
    VERSION_TABLE,
    alembic_config,
    create_store_engine,
    current_revision,
    upgrade,
)

from .builders import adaptation, run_input

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def database_of_the_old_code(url: str, revision: str) -> None:
    """A database at ``revision`` exactly as the code before the move left it: our revision in ``alembic_version``."""
    engine = create_store_engine(url)
    upgrade(engine, revision)
    with engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {VERSION_TABLE} RENAME TO {LEGACY_VERSION_TABLE}"))
        if connection.dialect.name == "postgresql":
            # PostgreSQL keeps the primary key's name through a table rename; the old code's table had Alembic's.
            connection.execute(text(
                f"ALTER TABLE {LEGACY_VERSION_TABLE} RENAME CONSTRAINT {VERSION_TABLE}_pkc TO {LEGACY_VERSION_TABLE}_pkc"
            ))
    engine.dispose()


def versions_in(url: str, table: str) -> list[str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(table):
                return []
            return list(connection.execute(text(f"SELECT version_num FROM {table}")).scalars())
    finally:
        engine.dispose()


def test_a_fresh_database_keeps_our_revision_in_our_own_table(db_url: str) -> None:
    with Store(db_url) as store:
        tables = set(inspect(store.engine).get_table_names())
    assert VERSION_TABLE in tables and LEGACY_VERSION_TABLE not in tables
    assert versions_in(db_url, VERSION_TABLE) == [HEAD]


def test_the_collision_is_real_optuna_refuses_a_database_holding_our_revision_in_alembic_version(db_url: str) -> None:
    database_of_the_old_code(db_url, "0004_lab_studies")
    with pytest.raises(RuntimeError, match="no longer compatible with the table schema"):
        optuna.create_study(study_name="s", storage=db_url)


@pytest.mark.parametrize("old_revision", ["0003_names_tags_previews", "0004_lab_studies"])
def test_an_old_database_upgrades_and_then_holds_an_optuna_study_beside_its_runs(
    db_url: str, old_revision: str
) -> None:
    database_of_the_old_code(db_url, old_revision)
    engine = create_store_engine(db_url)
    assert current_revision(engine) == old_revision  # read from the old table until the upgrade moves it
    engine.dispose()

    with Store(db_url) as store:  # opening the store upgrades it
        run_id = store.save_run(run_input(checkpoint_name="before the move"), [adaptation()], total_seconds=None)
        assert current_revision(store.engine) == HEAD
    assert versions_in(db_url, VERSION_TABLE) == [HEAD]
    assert versions_in(db_url, LEGACY_VERSION_TABLE) == []  # dropped: nothing else used it

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="beside the runs", storage=db_url, direction="maximize")
    study.optimize(lambda trial: -((trial.suggest_float("x", -1.0, 1.0) - 0.5) ** 2), n_trials=2)

    optuna_revisions = versions_in(db_url, LEGACY_VERSION_TABLE)
    assert len(optuna_revisions) == 1 and optuna_revisions[0] not in (HEAD, old_revision)
    # Both histories intact: the store still migrates (a no-op) and reads its run; Optuna reloads its study.
    with Store(db_url) as store:
        assert current_revision(store.engine) == HEAD
        assert store.get_run(run_id).checkpoint_name == "before the move"
    assert versions_in(db_url, VERSION_TABLE) == [HEAD]
    reloaded = optuna.load_study(study_name="beside the runs", storage=db_url)
    assert len(reloaded.trials) == 2 and reloaded.trials[1].params.keys() == {"x"}


def test_an_optuna_database_gets_the_store_without_touching_optuna_revision(db_url: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    create_store_engine(db_url).dispose()  # creates the folder
    optuna.create_study(study_name="first", storage=db_url)
    optuna_revisions = versions_in(db_url, LEGACY_VERSION_TABLE)
    with Store(db_url) as store:
        assert current_revision(store.engine) == HEAD
    assert versions_in(db_url, LEGACY_VERSION_TABLE) == optuna_revisions
    assert [s.study_name for s in optuna.get_all_study_summaries(db_url)] == ["first"]
