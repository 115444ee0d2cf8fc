"""The schema comes from Alembic: fresh databases, upgrades of old ones, and models that match the head."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from core.store import Store
from core.store.database import VERSION_TABLE, alembic_config, create_store_engine, current_revision, upgrade
from core.store.models import Base

from .builders import adaptation, run_input
from .helpers import continue_id_sequences, row_counts

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_the_revisions_are_0001_to_0006_in_order() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert [revision.revision for revision in script.walk_revisions()] == [
        "0006_owners", "0005_job_workers_and_evaluations", "0004_lab_studies", "0003_names_tags_previews", "0002_notes_and_jobs",
        "0001_initial",
    ]
    assert HEAD == "0006_owners"


def test_a_fresh_database_is_migrated_to_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'folder' / 'db.sqlite3'}"
    with Store(url) as store:
        assert current_revision(store.engine) == HEAD
        tables = set(inspect(store.engine).get_table_names())
    assert {"images", "checkpoints", "runs", "episode_items", "adaptations", "step_traces", "predictions",
            "jobs", "lab_studies", "evaluations", VERSION_TABLE} == tables


def test_an_older_database_is_upgraded_with_its_data(db_url: str) -> None:
    engine = create_store_engine(db_url)
    upgrade(engine, "0001_initial")
    assert "note" not in {column["name"] for column in inspect(engine).get_columns("runs")}
    assert "jobs" not in inspect(engine).get_table_names()
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO images (sha256, bytes, mime, width, height, size_bytes, created_at) "
            "VALUES (:sha, :data, 'image/png', 28, 28, 3, '2025-01-02 03:04:05.000006')"
        ), {"sha": "a" * 64, "data": b"png"})
        connection.execute(text(
            "INSERT INTO runs (id, created_at, source, dataset, split, n_way, k_shot, n_query, seed, checkpoint_id,"
            " checkpoint_name, device, status, error, steps, total_seconds, class_names, config) VALUES (7,"
            " '2025-01-02 03:04:05.000006', 'folder', 'pets', NULL, 2, 1, 1, NULL, NULL, 'old', 'cpu',"
            " 'succeeded', NULL, 1, 0.5, :names, '{}')"
        ), {"names": json.dumps(["cat", "dog"])})
        connection.execute(text(
            "INSERT INTO episode_items (run_id, role, position, label, image_sha256, source_name) VALUES"
            " (7, 'support', 0, 0, :sha, 'cat.png'), (7, 'support', 1, 1, :sha, 'dog.png'),"
            " (7, 'query', 0, NULL, :sha, 'who.png')"
        ), {"sha": "a" * 64})
        connection.execute(text(
            "INSERT INTO adaptations (id, run_id, position, rule, rule_label, steps, head_init, accuracy,"
            " query_loss, seconds) VALUES (3, 7, 0, 'sgd', 'SGD', 1, 'zero', NULL, NULL, 0.25)"
        ))
        connection.execute(text(
            "INSERT INTO step_traces (adaptation_id, step, layer, alpha, beta, support_loss, support_accuracy)"
            " VALUES (3, 0, 'head.weight', 0.1, 1.0, NULL, NULL), (3, 0, '', NULL, NULL, 0.7, 0.5),"
            " (3, 1, '', NULL, NULL, 0.2, 1.0)"
        ))
        connection.execute(text(
            "INSERT INTO predictions (adaptation_id, query_position, predicted, truth, probabilities, confidence)"
            " VALUES (3, 0, 1, NULL, '[0.25, 0.75]', 0.75)"
        ))
        continue_id_sequences(connection)
    engine.dispose()

    with Store(db_url) as store:
        assert current_revision(store.engine) == HEAD
        detail = store.get_run(7)
        assert (detail.dataset, detail.checkpoint_name, detail.note, detail.class_names) == (
            "pets", "old", None, ["cat", "dog"]
        )
        assert detail.created_at.isoformat() == "2025-01-02T03:04:05.000006+00:00"
        assert [item.source_name for item in detail.items] == ["cat.png", "dog.png", "who.png"]
        stored = detail.adaptations[0]
        assert stored.traces == [{"head.weight": {"alpha": 0.1, "beta": 1.0}}]
        assert (stored.support_loss, stored.support_accuracy) == ([0.7, 0.2], [0.5, 1.0])
        assert (stored.predictions, stored.probabilities, stored.truths) == ([1], [[0.25, 0.75]], None)
        # What 0002 added works on the upgraded database.
        store.update_run(7, note="kept from before")
        assert store.get_run(7).note == "kept from before"
        assert store.jobs.get(store.jobs.create("rerun", {"run_id": 7}))["payload"] == {"run_id": 7}
        new_id = store.save_run(run_input(), [adaptation()], total_seconds=None)
        assert new_id > 7


def test_a_0002_database_with_a_run_is_upgraded_to_names_tags_and_previews(db_url: str) -> None:
    with Store(db_url, migrate=False) as old:
        upgrade(old.engine, "0002_notes_and_jobs")
        assert "tags" not in {column["name"] for column in inspect(old.engine).get_columns("runs")}
        assert "preview" not in {column["name"] for column in inspect(old.engine).get_columns("images")}
        with old.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO images (sha256, bytes, mime, width, height, size_bytes, created_at) "
                "VALUES (:sha, :data, 'image/png', 28, 28, 3, '2025-01-02 03:04:05')"
            ), {"sha": "b" * 64, "data": b"png"})
            connection.execute(text(
                "INSERT INTO runs (id, created_at, source, dataset, split, n_way, k_shot, n_query, seed,"
                " checkpoint_id, checkpoint_name, device, status, error, steps, total_seconds, class_names, config,"
                " note) VALUES (4, '2025-01-02 03:04:05', 'upload', NULL, NULL, 1, 1, 1, NULL, NULL, 'old', 'cpu',"
                " 'succeeded', NULL, 2, NULL, '[\"cat\"]', '{}', 'from 0002')"
            ))
            connection.execute(text(
                "INSERT INTO episode_items (run_id, role, position, label, image_sha256, source_name) VALUES"
                " (4, 'support', 0, 0, :sha, 'cat.png'), (4, 'query', 0, 0, :sha, 'cat2.png')"
            ), {"sha": "b" * 64})
        before = row_counts(old)

    with Store(db_url) as store:
        assert current_revision(store.engine) == HEAD
        assert row_counts(store) == before
        [summary] = store.list_runs()
        assert (summary.id, summary.name, summary.tags, summary.note, summary.steps) == (4, None, [], "from 0002", 2)
        assert store.get_previews(["b" * 64]) == {"b" * 64: None}
        assert store.get_images(["b" * 64]) == {"b" * 64: (b"png", "image/png")}
        # The new columns work on the upgraded run.
        store.update_run(4, name="first try", tags=["old", "v1"])
        assert [s.id for s in store.list_runs(tag="v1", name_contains="FIRST")] == [4]
        if store.engine.dialect.name == "sqlite":
            # AUTOINCREMENT survived: no table was copied (only SQLite's batch mode copies tables).
            with store.engine.connect() as connection:
                create_runs = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'runs'").scalar()
            assert "AUTOINCREMENT" in create_runs


def test_every_revision_upgrades_and_downgrades_one_step_at_a_time(db_url: str) -> None:
    """Empty -> each revision in turn -> head -> back down one revision at a time -> empty: on SQLite (batch mode
    copies tables) and on PostgreSQL (plain ALTER TABLE, in a transaction)."""
    revisions = [script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()][::-1]
    engine = create_store_engine(db_url)
    try:
        for revision in revisions:
            upgrade(engine, revision)
            assert current_revision(engine) == revision
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
        for previous in [*revisions[-2::-1], "base"]:
            with engine.connect() as connection:
                command.downgrade(alembic_config(connection), previous)
            assert current_revision(engine) == (None if previous == "base" else previous)
        assert inspect(engine).get_table_names() == [VERSION_TABLE]
    finally:
        engine.dispose()


def test_the_models_match_the_migrated_schema(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrading_keeps_the_data_of_copied_tables(store: Store) -> None:
    # Dropping runs.note copies the runs table on SQLite; with foreign keys on that would cascade-delete items.
    store.save_run(run_input(), [adaptation()], total_seconds=None)
    before = row_counts(store)
    with store.engine.connect() as connection:
        command.downgrade(alembic_config(connection), "0001_initial")
    assert current_revision(store.engine) == "0001_initial"
    assert row_counts(store) == before
    upgrade(store.engine)
    assert current_revision(store.engine) == HEAD
    assert row_counts(store) == before
    if store.engine.dialect.name == "sqlite":  # the pragma env.py switches off while SQLite copies tables
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # restored after migrating


def test_migrating_inside_an_open_transaction_with_foreign_keys_on_is_refused(sqlite_store: Store) -> None:
    # SQLite only: the foreign-key pragma env.py must switch off is SQLite's (PostgreSQL alters tables in place).
    store = sqlite_store
    store.save_run(run_input(), [adaptation()], total_seconds=None)
    before = row_counts(store)
    with pytest.raises(RuntimeError, match="without an open transaction"), store.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0001_initial")
    assert current_revision(store.engine) == HEAD and row_counts(store) == before


def test_the_alembic_command_line_uses_the_shipped_ini(tmp_path: Path, db_url: str) -> None:
    url = db_url
    environment = {**os.environ, "FEWSHOT_DATABASE_URL": url}
    ini = Path(__file__).resolve().parents[3] / "core" / "store" / "alembic.ini"
    completed = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    engine = create_store_engine(url)
    assert current_revision(engine) == HEAD
    engine.dispose()


def test_foreign_keys_are_enforced(any_store: Store) -> None:
    with pytest.raises(IntegrityError), any_store.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO episode_items (run_id, role, position, label, image_sha256, source_name)"
            " VALUES (999, 'query', 0, NULL, :sha, 'ghost.png')"
        ), {"sha": "f" * 64})


def test_deleting_a_checkpoint_keeps_its_runs_and_their_checkpoint_name(store: Store) -> None:
    run_id = store.save_run(run_input(checkpoint_name="gone"), [adaptation()], total_seconds=None)
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM checkpoints"))
    detail = store.get_run(run_id)
    assert detail.checkpoint is None and detail.checkpoint_name == "gone"


def test_a_file_database_uses_wal_and_a_busy_timeout(sqlite_store: Store) -> None:
    # SQLite only: these are SQLite's connection pragmas.
    store = sqlite_store
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migrate_false_leaves_the_schema_alone(db_url: str) -> None:
    with Store(db_url, migrate=False) as store:
        assert current_revision(store.engine) is None
        assert inspect(store.engine).get_table_names() == []


def test_a_0004_database_with_a_job_is_upgraded_to_the_worker_columns(db_url: str) -> None:
    with Store(db_url, migrate=False) as old:
        upgrade(old.engine, "0004_lab_studies")
        with old.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO jobs (id, kind, status, progress, message, payload, result, error, created_at, updated_at)"
                " VALUES (5, 'rerun', 'succeeded', 1.0, 'done', '{\"run_id\": 7}', NULL, NULL,"
                " '2025-01-02 03:04:05', '2025-01-02 03:04:06')"
            ))
    with Store(db_url) as store:
        assert current_revision(store.engine) == HEAD
        job = store.jobs.record(5)
        # Jobs stored before keep their columns and get the new ones' defaults.
        assert (job.kind, job.status, job.payload, job.started_by, job.cancel_requested, job.worker) == (
            "rerun", "succeeded", {"run_id": 7}, "", False, None
        )
        assert store.jobs.evaluations() == []
        with store.engine.connect() as connection:
            command.downgrade(alembic_config(connection), "0004_lab_studies")
        assert "evaluations" not in inspect(store.engine).get_table_names()
        with store.engine.connect() as connection:
            assert connection.execute(text("SELECT kind, status FROM jobs WHERE id = 5")).one() == ("rerun", "succeeded")
