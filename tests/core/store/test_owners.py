"""Owners (revision 0006) and the one delete/cancel rule of ``core.store.permissions``: a run, a lab study and a job
can be removed by their owner or an admin only; a refused request changes nothing; old rows have no owner."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from core.store import Store, StudyInput, StudyTable
from core.store.database import create_store_engine, current_revision, upgrade
from core.store.permissions import LOCAL, Actor, NotPermitted, may_change

from .builders import adaptation, run_input
from .helpers import row_counts

ALICE = Actor("alice@example.org")
BOB = Actor("bob@example.org")
ADMIN = Actor("admin@example.org", is_admin=True)
VISITOR = Actor("")  # not signed in


def save(store: Store, owner: str, tag: str) -> int:
    return store.owned_by(owner).save_run(run_input(note=tag), [adaptation()], total_seconds=1.0)


def owners(store: Store) -> dict[int, str]:
    return {summary.id: summary.owner for summary in store.list_runs(limit=None)}


@pytest.mark.parametrize(
    ("actor", "owner", "allowed"),
    [
        (ALICE, "alice@example.org", True),
        (ALICE, "bob@example.org", False),
        (ALICE, "", False),  # no owner: only an admin
        (ADMIN, "bob@example.org", True),
        (ADMIN, "", True),
        (LOCAL, "", True),  # the single-user default may do everything
        (VISITOR, "", False),  # a visitor never matches the empty owner
        (VISITOR, "alice@example.org", False),
    ],
)
def test_the_rule_owner_or_admin(actor: Actor, owner: str, allowed: bool) -> None:
    assert may_change(actor, owner) is allowed


def test_a_saved_run_records_its_owner_and_a_plain_store_none(store: Store) -> None:
    mine = save(store, "alice@example.org", "a")
    nobody = store.save_run(run_input(note="n"), [adaptation()], total_seconds=None)
    failed = store.owned_by("bob@example.org").save_failed_run(run_input(note="f"), "boom")
    assert owners(store) == {mine: "alice@example.org", nobody: "", failed: "bob@example.org"}
    assert store.get_run(mine).owner == "alice@example.org"
    assert store.owner == ""  # owned_by made a view; the shared store is unchanged


def test_the_owner_deletes_their_run(store: Store) -> None:
    mine, theirs = save(store, "alice@example.org", "a"), save(store, "bob@example.org", "b")
    assert store.delete_runs([mine], by=ALICE) == 1
    assert owners(store) == {theirs: "bob@example.org"}


def test_a_mixed_selection_is_refused_whole_and_nothing_is_deleted(store: Store) -> None:
    mine, theirs, old = save(store, "alice@example.org", "a"), save(store, "bob@example.org", "b"), save(store, "", "o")
    before = row_counts(store)
    with pytest.raises(NotPermitted) as refused:
        store.delete_runs([mine, theirs, old], by=ALICE)
    assert refused.value.refused == {theirs: "bob@example.org", old: ""}
    assert str(refused.value) == (
        f"run #{theirs} (made by bob@example.org), run #{old} (made before sign-in, no owner): not yours (you are "
        "alice@example.org; only the owner or an admin may change it). Nothing was changed."
    )
    assert row_counts(store) == before
    assert owners(store) == {mine: "alice@example.org", theirs: "bob@example.org", old: ""}


def test_a_visitor_deletes_nothing_not_even_runs_without_owner(store: Store) -> None:
    old = save(store, "", "o")
    with pytest.raises(NotPermitted, match="sign in first"):
        store.delete_runs([old], by=VISITOR)
    assert owners(store) == {old: ""}


def test_an_admin_and_the_local_default_delete_anyones_runs(store: Store) -> None:
    theirs, old, kept = save(store, "bob@example.org", "b"), save(store, "", "o"), save(store, "bob@example.org", "k")
    assert store.delete_runs([theirs, old], by=ADMIN) == 2
    assert owners(store) == {kept: "bob@example.org"}
    assert store.delete_runs([kept]) == 1  # no actor given: LOCAL, as scripts and the single-user dashboard
    assert owners(store) == {}


def test_unknown_ids_are_ignored_and_not_refused(store: Store) -> None:
    mine = save(store, "alice@example.org", "a")
    assert store.delete_runs([mine, 987654], by=ALICE) == 1


def test_lab_studies_record_their_owner_and_follow_the_rule(store: Store) -> None:
    study = StudyInput(name="s", kind="quadratic", settings={"k": 1}, results={"r": [1.0]}, wall_seconds=0.5)
    alices = StudyTable(store.owned_by("alice@example.org")).save(study)
    table = StudyTable(store)
    old = table.save(study)
    assert [(s.id, s.owner) for s in table.list_studies()] == [(old, ""), (alices, "alice@example.org")]
    assert table.get(alices).owner == "alice@example.org"
    with pytest.raises(NotPermitted) as refused:
        table.delete(alices, by=BOB)
    assert refused.value.refused == {alices: "alice@example.org"}
    with pytest.raises(NotPermitted):
        table.delete(old, by=ALICE)
    assert [s.id for s in table.list_studies()] == [old, alices]
    table.delete(alices, by=ALICE)
    table.delete(old, by=ADMIN)
    assert table.list_studies() == []


def test_an_owner_longer_than_the_column_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="at most 100"):
        store.owned_by("x" * 101)
    with pytest.raises(ValueError, match="at most 100"):
        Actor("x" * 101)


def test_a_0005_database_with_runs_and_studies_is_upgraded_with_owner_empty(db_url: str) -> None:
    engine = create_store_engine(db_url)
    upgrade(engine, "0005_job_workers_and_evaluations")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runs (id, created_at, source, dataset, split, n_way, k_shot, n_query, seed, checkpoint_id,"
                " checkpoint_name, device, status, error, steps, total_seconds, class_names, config, note, name, tags)"
                " VALUES (5, '2026-01-02 03:04:05', 'upload', NULL, NULL, 1, 1, 1, NULL, NULL, 'old', 'cpu',"
                " 'succeeded', NULL, 2, NULL, '[\"cat\"]', '{}', NULL, 'before sign-in', '[]')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO lab_studies (id, created_at, name, kind, settings, results, wall_seconds)"
                " VALUES (3, '2026-01-02 03:04:05', 'old study', 'quadratic', '{}', '{}', 1.5)"
            )
        )
    engine.dispose()
    with Store(db_url) as store:
        assert current_revision(store.engine) == "0006_owners"
        assert [(s.id, s.name, s.owner) for s in store.list_runs()] == [(5, "before sign-in", "")]
        assert [(s.id, s.owner) for s in StudyTable(store).list_studies()] == [(3, "")]
        with pytest.raises(NotPermitted):
            store.delete_runs([5], by=ALICE)
        assert store.delete_runs([5], by=ADMIN) == 1
        new = save(store, "alice@example.org", "new")
        assert owners(store) == {new: "alice@example.org"}
