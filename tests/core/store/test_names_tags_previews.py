"""Revision 0003: run names and tags, image previews, batch reads without N+1 queries, CSV row kinds."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import event

from core.store import CSV_ROW_KINDS, MAX_NAME_LENGTH, MAX_TAGS, RUN_SOURCES, Store

from .builders import LAYERS, adaptation, run_input
from .helpers import row_counts


@contextmanager
def counted_queries(store: Store) -> Iterator[list[str]]:
    """The SQL statements the store sends while the block runs."""
    statements: list[str] = []

    def record(_connection, _cursor, statement, _parameters, _context, _executemany) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------ names and tags


def test_a_run_is_saved_with_its_name_and_tags_cleaned(store: Store) -> None:
    run = run_input()
    run.name, run.tags = "  baseline  ", ["v1", " ablation ", "v1", ""]
    run_id = store.save_run(run, [adaptation()], total_seconds=None)
    detail = store.get_run(run_id)
    assert (detail.name, detail.tags) == ("baseline", ["v1", "ablation"])
    assert store.get_run(store.save_run(run_input(), [], None)).tags == []


def test_update_run_changes_only_what_is_given(store: Store) -> None:
    run_id = store.save_run(run_input(note="first"), [adaptation()], total_seconds=None)

    summary = store.update_run(run_id, name="5-way baseline", tags=["v2", "omniglot"])

    assert (summary.id, summary.name, summary.tags, summary.note) == (run_id, "5-way baseline", ["v2", "omniglot"], "first")
    stored = store.get_run(run_id)
    assert (stored.name, stored.tags, stored.note) == ("5-way baseline", ["v2", "omniglot"], "first")
    store.update_run(run_id, note="  second thoughts \n")
    assert (store.get_run(run_id).name, store.get_run(run_id).note) == ("5-way baseline", "second thoughts")
    store.update_run(run_id, name="", tags=[], note=None)
    stored = store.get_run(run_id)
    assert (stored.name, stored.tags, stored.note) == (None, [], None)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "x" * (MAX_NAME_LENGTH + 1)}, f"at most {MAX_NAME_LENGTH} characters; this one has 101"),
        ({"tags": ["two words"]}, r"tag 'two words' may only contain letters .* \(no spaces\)"),
        ({"tags": ["naïve"]}, "may only contain"),
        ({"tags": ['say"hi']}, "may only contain"),
        ({"tags": ["t" * 41]}, "too long: at most 40 characters"),
        ({"tags": [f"t{i}" for i in range(MAX_TAGS + 1)]}, f"at most {MAX_TAGS} tags, not 21"),
        ({"note": "n" * 10_001}, "at most 10000 characters"),
        ({"name": "fine", "tags": ["bad tag"]}, "no spaces"),  # nothing changes, not even the valid name
    ],
)
def test_bad_names_tags_and_notes_are_refused_and_nothing_changes(store: Store, changes, message) -> None:
    run_id = store.save_run(run_input(), [adaptation()], total_seconds=None)
    store.update_run(run_id, name="kept", tags=["kept"])
    with pytest.raises(ValueError, match=message):
        store.update_run(run_id, **changes)
    stored = store.get_run(run_id)
    assert (stored.name, stored.tags) == ("kept", ["kept"])


@pytest.mark.parametrize(("tags", "message"), [("v1", "a list of words, not one string"), ([3], "a tag must be text")])
def test_tags_that_are_not_a_list_of_strings_are_a_type_error(store: Store, tags, message: str) -> None:
    run_id = store.save_run(run_input(), [adaptation()], total_seconds=None)
    with pytest.raises(TypeError, match=message):
        store.update_run(run_id, tags=tags)
    assert store.get_run(run_id).tags == []


def test_a_bad_tag_in_a_new_run_writes_nothing(store: Store) -> None:
    run = run_input()
    run.tags = ["ok", "not ok"]
    with pytest.raises(ValueError, match="no spaces"):
        store.save_run(run, [adaptation()], total_seconds=None)
    assert set(row_counts(store).values()) == {0}


def test_updating_an_unknown_run_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError, match="no run with id 42"):
        store.update_run(42, name="ghost")


def test_runs_are_filtered_by_tag_and_by_name(store: Store) -> None:
    first = store.save_run(run_input(), [adaptation()], total_seconds=None)
    second = store.save_run(run_input(), [adaptation()], total_seconds=None)
    third = store.save_run(run_input(), [adaptation()], total_seconds=None)
    store.update_run(first, name="Baseline 5-way", tags=["a_b", "v1"])
    store.update_run(second, name="100% ALFA", tags=["axb", "v10"])
    store.update_run(third, tags=["v1/x"])

    def listed(**filters) -> list[int]:
        return [summary.id for summary in store.list_runs(**filters)]

    assert listed(tag="v1") == [first]  # not v10 nor v1/x: whole tags only
    assert listed(tag="a_b") == [first]  # "_" is not a LIKE wildcard here
    assert listed(tag=["v10", "v1/x"]) == [third, second]
    assert listed(tag=[]) == [] and listed(tag="nope") == []
    assert listed(name_contains="baseline") == [first]
    assert listed(name_contains="0%") == [second]  # "%" is literal
    assert listed(name_contains="") == [third, second, first]
    assert listed(name_contains="ALFA", tag="v1") == []
    assert store.distinct_values("tag") == ["a_b", "axb", "v1", "v1/x", "v10"]


def test_the_new_sources_are_accepted() -> None:
    assert {"drawing", "camera"} <= set(RUN_SOURCES)


@pytest.mark.parametrize("source", ["drawing", "camera"])
def test_drawn_and_photographed_runs_are_stored(store: Store, source: str) -> None:
    run_id = store.save_run(run_input(source=source), [adaptation()], total_seconds=None)
    assert store.get_run(run_id).source == source
    assert [s.id for s in store.list_runs(source=source)] == [run_id]


# ---------------------------------------------------------------------------------------------- previews


def with_preview(run, preview: bytes | None):
    """The run with ``preview`` on every image."""
    run.items = [replace(item, image=replace(item.image, preview=preview)) for item in run.items]
    return run


def test_previews_are_stored_with_their_images_and_read_in_one_query(store: Store) -> None:
    run = run_input(images=("a", "b", "q1", "q2"), reuse_first_image_as_last_query=False)
    for index, item in enumerate(run.items):
        item.image.preview = f"preview {index}".encode()
    run_id = store.save_run(run, [adaptation()], total_seconds=None)
    hashes = [item.image_sha256 for item in store.get_run(run_id).items]

    with counted_queries(store) as statements:
        previews = store.get_previews([*hashes, "f" * 64])
    assert len(statements) == 1
    assert previews == {h: f"preview {i}".encode() for i, h in enumerate(hashes)}  # the unknown hash is left out

    with counted_queries(store) as statements:
        images = store.get_images(hashes)
    assert len(statements) == 1
    assert images == {sha(item.image.data): (item.image.data, item.image.mime) for item in run.items}
    assert store.get_image(hashes[0]) == images[hashes[0]]


def test_an_image_without_a_preview_gets_one_when_saved_again_with_one(store: Store) -> None:
    first = store.save_run(run_input(), [adaptation()], total_seconds=None)
    hashes = [item.image_sha256 for item in store.get_run(first).items]
    assert set(store.get_previews(hashes).values()) == {None}

    store.save_run(with_preview(run_input(), b"small png"), [adaptation()], total_seconds=None)
    assert set(store.get_previews(hashes).values()) == {b"small png"}

    # A preview, once there, is kept: the same image is the same picture.
    store.save_run(with_preview(run_input(), b"other png"), [adaptation()], total_seconds=None)
    assert set(store.get_previews(hashes).values()) == {b"small png"}
    assert row_counts(store)["images"] == len(set(hashes))


def test_deleting_a_run_deletes_its_orphan_previews_with_the_images(store: Store) -> None:
    run_id = store.save_run(with_preview(run_input(), b"png"), [adaptation()], total_seconds=None)
    hashes = [item.image_sha256 for item in store.get_run(run_id).items]
    store.delete_runs([run_id])
    assert store.get_previews(hashes) == {} and store.get_images(hashes) == {}


# ------------------------------------------------------------------------------------------- batch reads


def test_get_runs_reads_many_runs_with_as_many_queries_as_one(store: Store) -> None:
    ids = [
        store.save_run(run_input(images=(f"a{i}", f"b{i}", f"q{i}", f"r{i}")),
                       [adaptation("sgd"), adaptation("alfa", offset=i / 10)], total_seconds=float(i))
        for i in range(12)
    ]
    with counted_queries(store) as one:
        [single] = store.get_runs([ids[3]])
    with counted_queries(store) as many:
        details = store.get_runs(list(reversed(ids)))
    assert len(many) == len(one) <= 6
    assert [d.id for d in details] == list(reversed(ids))
    assert details[-4] == single
    with pytest.raises(KeyError, match="no run with id 998, 999"):
        store.get_runs([ids[0], 998, 999])


def test_listing_a_thousand_runs_takes_a_fixed_number_of_queries(store: Store) -> None:
    ids = [store.save_run(run_input(), [adaptation("sgd", accuracy=i / 1000)], total_seconds=None) for i in range(60)]
    with counted_queries(store) as statements:
        summaries = store.list_runs(limit=None)
    assert len(statements) == 2  # runs, then their adaptations
    assert [s.id for s in summaries] == list(reversed(ids))
    assert summaries[0].steps == 3 and summaries[0].accuracies == {"sgd": 59 / 1000}


# ------------------------------------------------------------------------------------------------- CSV


def test_every_csv_row_says_what_it_is(store: Store) -> None:
    run_id = store.save_run(run_input(), [adaptation("sgd", steps=2)], total_seconds=None)
    store.update_run(run_id, name="named", tags=["t1", "t2"])
    failed = store.save_failed_run(run_input(), "boom")

    rows = list(csv.DictReader(io.StringIO(store.export_runs([run_id, failed], "csv").decode())))

    kinds = [row["row_kind"] for row in rows]
    assert set(kinds) <= set(CSV_ROW_KINDS)
    # Step 0: its step-level row then its layers; step 1 likewise; step 2 (after the last update) only a step row.
    assert kinds == ["step", *["layer"] * len(LAYERS), "step", *["layer"] * len(LAYERS), "step", "run"]
    assert all(row["layer"] == "" and row["support_loss"] != "" for row in rows if row["row_kind"] == "step")
    assert all(row["layer"] in LAYERS and row["alpha"] != "" for row in rows if row["row_kind"] == "layer")
    assert (rows[-1]["run_id"], rows[-1]["rule"], rows[-1]["step"]) == (str(failed), "", "")
    assert (rows[0]["name"], rows[0]["tags"]) == ("named", "t1 t2")

