"""Lab studies in the store (table lab_studies, revision 0004): exact round trip, one transaction, list/rename/delete,
and the migration up and down."""

from __future__ import annotations

import json
import math

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.orm import Session

from core.store import Store, StudyInput, StudyTable
from core.store.database import alembic_config, current_revision, upgrade

SETTINGS = {"kappa": 1000.0, "lam": 0.1, "n": 20, "cg_steps": [2, 5, 10], "estimators": ["maml", "fo_b_maml"]}
# Floats that a lossy text format would change: many digits, tiny and huge exponents, a negative zero, a None.
RESULTS = {
    "errors": [{"label": "maml", "relative_error": [0.1 + 0.2, 1 / 3, 5e-324, 1.7976931348623157e308, None]}],
    "f_star": -0.0,
    "nested": {"flag": True, "text": "δ → 0", "empty": []},
}


def study(name: str = "first", kind: str = "quadratic", **changes) -> StudyInput:
    values = {"name": name, "kind": kind, "settings": SETTINGS, "results": RESULTS, "wall_seconds": 2.5, **changes}
    return StudyInput(**values)


@pytest.fixture
def studies(any_store: Store) -> StudyTable:
    return StudyTable(any_store)


def count(store: Store) -> int:
    with store.engine.connect() as connection:
        return connection.execute(text("SELECT COUNT(*) FROM lab_studies")).scalar_one()


def test_a_stored_study_reads_back_exactly(studies: StudyTable) -> None:
    study_id = studies.save(study())
    stored = studies.get(study_id)
    assert (stored.id, stored.name, stored.kind, stored.wall_seconds) == (study_id, "first", "quadratic", 2.5)
    assert stored.settings == SETTINGS and stored.results == RESULTS
    # float for float, the sign of zero included
    values = stored.results["errors"][0]["relative_error"]
    assert [v.hex() if v is not None else None for v in values] == [
        v.hex() if v is not None else None for v in RESULTS["errors"][0]["relative_error"]
    ]
    assert math.copysign(1, stored.results["f_star"]) == -1
    assert stored.created_at.tzinfo is not None


def test_the_row_holds_the_json_text_of_what_was_given(any_store: Store, studies: StudyTable) -> None:
    study_id = studies.save(study())
    with any_store.engine.connect() as connection:
        row = connection.execute(
            text("SELECT name, kind, settings, results, wall_seconds FROM lab_studies WHERE id = :id"), {"id": study_id}
        ).one()
    assert (row.name, row.kind, row.wall_seconds) == ("first", "quadratic", 2.5)
    assert json.loads(row.settings) == SETTINGS and json.loads(row.results) == RESULTS


def test_an_error_inside_the_transaction_leaves_no_row(any_store: Store, studies: StudyTable) -> None:
    seen = []

    def fail_after_flush(session: Session, _context) -> None:
        seen.append(session.execute(text("SELECT COUNT(*) FROM lab_studies")).scalar_one())
        raise RuntimeError("disk on fire")

    event.listen(Session, "after_flush", fail_after_flush)
    try:
        with pytest.raises(RuntimeError, match="disk on fire"):
            studies.save(study())
    finally:
        event.remove(Session, "after_flush", fail_after_flush)
    assert seen == [1]  # the row was in the transaction
    assert count(any_store) == 0  # and is gone with it
    assert studies.get(studies.save(study())).name == "first"  # the table still works


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "  "}, "needs a name"),
        ({"name": "x" * 101}, "at most 100 characters"),
        ({"kind": "Quadratic study"}, "a study kind"),
        ({"wall_seconds": float("nan")}, "wall_seconds"),
        ({"wall_seconds": -1.0}, "wall_seconds"),
        ({"results": {"loss": [1.0, float("inf")]}}, "finite numbers"),
        ({"settings": {"when": object()}}, "plain JSON data"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_writes_nothing(
    any_store: Store, studies: StudyTable, changes, message
) -> None:
    with pytest.raises(ValueError, match=message):
        studies.save(study(**changes))
    assert count(any_store) == 0


def test_settings_that_are_not_a_table_are_refused(studies: StudyTable) -> None:
    with pytest.raises(TypeError, match="must be a JSON object"):
        studies.save(study(settings=[1, 2]))


def test_list_filters_by_kind_and_name_newest_first(studies: StudyTable) -> None:
    a = studies.save(study("kappa 1000"))
    b = studies.save(study("Kappa 10 100%"))
    c = studies.save(study("memory", kind="other"))
    assert [s.id for s in studies.list_studies()] == [c, b, a]
    assert [s.id for s in studies.list_studies(kind="quadratic")] == [b, a]
    assert [s.id for s in studies.list_studies(name_contains="KAPPA")] == [b, a]
    assert [s.id for s in studies.list_studies(name_contains="0%")] == [b]  # % is literal
    assert [s.id for s in studies.list_studies(name_contains="_")] == []  # so is _
    assert [s.id for s in studies.list_studies(limit=1)] == [c]
    summary = studies.list_studies(kind="other")[0]
    assert (summary.name, summary.kind, summary.wall_seconds) == ("memory", "other", 2.5)


def test_rename_and_delete(any_store: Store, studies: StudyTable) -> None:
    keep, drop = studies.save(study("keep")), studies.save(study("drop"))
    studies.rename(keep, "  renamed ")
    assert studies.get(keep).name == "renamed"
    with pytest.raises(ValueError, match="needs a name"):
        studies.rename(keep, "")
    studies.delete(drop)
    assert [s.id for s in studies.list_studies()] == [keep] and count(any_store) == 1
    for action in (lambda: studies.get(drop), lambda: studies.delete(drop), lambda: studies.rename(drop, "x")):
        with pytest.raises(KeyError, match=f"no lab study with id {drop}"):
            action()


def test_ids_are_not_reused_after_a_delete(studies: StudyTable) -> None:
    first = studies.save(study())
    studies.delete(first)
    assert studies.save(study()) > first


def test_migration_0004_adds_the_table_and_downgrading_removes_it(store: Store) -> None:
    file_store = store
    studies = StudyTable(file_store)
    studies.save(study())
    with file_store.engine.connect() as connection:
        command.downgrade(alembic_config(connection), "0003_names_tags_previews")
    assert current_revision(file_store.engine) == "0003_names_tags_previews"
    assert "lab_studies" not in inspect(file_store.engine).get_table_names()
    upgrade(file_store.engine)
    assert current_revision(file_store.engine) == ScriptDirectory.from_config(alembic_config()).get_current_head()
    columns = {c["name"]: c for c in inspect(file_store.engine).get_columns("lab_studies")}
    assert list(columns) == ["id", "created_at", "name", "kind", "settings", "results", "wall_seconds", "owner"]
    assert not any(c["nullable"] for c in columns.values())
    indexes = {i["name"] for i in inspect(file_store.engine).get_indexes("lab_studies")}
    assert indexes == {"ix_lab_studies_created_at", "ix_lab_studies_kind"}
    assert studies.list_studies() == []  # the upgraded table is empty and works
    assert studies.get(studies.save(study())).results == RESULTS
