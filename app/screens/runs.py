"""Runs page: the stored runs with filters; open one (``?run=<id>``), name and tag it, compare, export, delete.

The filters and the selected runs live in the URL (``?ways=5&rules=ALFA&select=12&select=15``), so a reload
or a shared link shows the same list and selection; the filter widgets are bound to it by Streamlit
(``bind="query-params"``), the selection (``select``) and the open run (``run``) are written here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Any
from urllib.parse import urlencode

import streamlit as st

from app import compare
from app.auth import current_actor, owned_store, sign_in_configured
from app.formatting import rule_label
from app.resources import cached_loader, get_store, run_executor
from app.run_progress import follow
from app.views import ADAPT_PAGE, render_run
from core.device import pick_device
from core.runs import start_rerun
from core.settings import demo_mode
from core.store import MAX_TAGS, RUN_SOURCES, RUN_STATUSES, TAG_CHARACTERS, RunSummary
from core.store.permissions import NotPermitted

MAX_LISTED = 1000  # newest runs the table shows; the filters reach older ones
MAX_DETAILED = 20  # selected runs whose curves and settings are drawn (grouping uses every selected run)
SELECT = "select"  # URL parameter of the selected run ids
RUN = "run"  # URL parameter of the run that is open
DELETE_MESSAGE = "deleted_message"  # session state: (kind, text) of the last delete, shown once

store = get_store()


# --------------------------------------------------------------------------------------------- the URL


def _url_ids(key: str) -> tuple[list[int], list[str]]:
    """Whole numbers of a repeated URL parameter, and the values that are not."""
    ids, bad = [], []
    for raw in st.query_params.get_all(key):
        try:
            ids.append(int(raw))
        except ValueError:
            bad.append(raw)
    return list(dict.fromkeys(ids)), bad


def _set_url_ids(key: str, ids: Sequence[int]) -> None:
    values = [str(i) for i in ids]
    if st.query_params.get_all(key) == values:
        return
    if values:
        st.query_params[key] = values
    else:
        st.query_params.pop(key, None)


def _open_run(run_id: int) -> None:
    st.query_params[RUN] = str(run_id)


def _close_run() -> None:
    st.query_params.pop(RUN, None)


def _link_to(run_id: int) -> str:
    """A relative link to the run that keeps this page's filters (so "All runs" returns to the same list)."""
    kept = [(key, value) for key in st.query_params if key not in (RUN, SELECT) for value in st.query_params.get_all(key)]
    return "?" + urlencode([*kept, (RUN, str(run_id))])


# ------------------------------------------------------------------------------------------- filters


class _Choices:
    """The options of each filter widget, read from the store once per script run."""

    def __init__(self) -> None:
        self.options: dict[str, tuple[list[Any], Callable[[Any], str]]] = {
            "sources": (list(RUN_SOURCES), str),
            "datasets": ([d for d in store.distinct_values("dataset") if d is not None], str),
            "statuses": (list(RUN_STATUSES), str),
            "ways": (store.distinct_values("n_way"), str),
            "shots": (store.distinct_values("k_shot"), str),
            "checkpoints": (store.distinct_values("checkpoint_name"), str),
            "rules": (store.distinct_values("rule"), rule_label),
            "tags": (store.distinct_values("tag"), str),
        }

    def url_problems(self) -> list[str]:
        """``key=value (why)`` for each value in the URL the filters cannot use (Streamlit drops them)."""
        problems = []
        for key, (options, label) in self.options.items():
            known = {label(option) for option in options}
            problems += [f"{key}={raw} (no such choice)" for raw in st.query_params.get_all(key) if raw and raw not in known]
        dates = st.query_params.get_all("dates")
        for raw in dates:
            try:
                date.fromisoformat(raw)
            except ValueError:
                problems.append(f"dates={raw} (not a date like 2026-03-01)")
        if len(dates) > 2:
            problems.append("dates (give one or two dates: from, to)")
        for raw in st.query_params.get_all("min_accuracy"):
            if not (raw.isdigit() and 0 <= int(raw) <= 100):
                problems.append(f"min_accuracy={raw} (not a whole percentage from 0 to 100)")
        problems += [f"{SELECT}={raw} (not a run id)" for raw in _url_ids(SELECT)[1]]
        return problems


def _filters(choices: _Choices) -> dict[str, Any]:
    """The filter widgets (each bound to its URL parameter) and the ``Store.list_runs`` arguments they give."""
    active = any(key in st.query_params for key in (*choices.options, "dates", "min_accuracy", "search"))
    with st.expander("Filters", expanded=active):
        first = st.columns(4)
        dates = first[0].date_input("Date range", value=(), key="dates", format="YYYY-MM-DD", bind="query-params")
        search = first[1].text_input("Name contains", key="search", bind="query-params")
        tags = first[2].multiselect("Tags (any of)", choices.options["tags"][0], key="tags", bind="query-params")
        min_accuracy = first[3].slider(
            "Min accuracy (%)", 0, 100, 0, key="min_accuracy", bind="query-params",
            help="Runs where some rule (one of the chosen rules, if any) reached at least this accuracy.",
        )
        second = st.columns(7)
        values: dict[str, list[Any]] = {}
        labels = {"sources": "Source", "datasets": "Dataset", "statuses": "Status", "ways": "Way", "shots": "Shot",
                  "checkpoints": "Checkpoint", "rules": "Rule"}
        for column, (key, label) in zip(second, labels.items()):
            options, format_func = choices.options[key]
            values[key] = column.multiselect(label, options, format_func=format_func, key=key, bind="query-params")
    filters: dict[str, Any] = {
        "source": values["sources"] or None,
        "dataset": values["datasets"] or None,
        "status": values["statuses"] or None,
        "n_way": values["ways"] or None,
        "k_shot": values["shots"] or None,
        "checkpoint_name": values["checkpoints"] or None,
        "rule": values["rules"] or None,
        "tag": tags or None,
        "name_contains": search.strip() or None,
        "min_accuracy": min_accuracy / 100 if min_accuracy else None,
    }
    if len(dates) >= 1:
        # Calendar days in the server's time zone, converted to the store's UTC.
        filters["since"] = datetime.combine(dates[0], time.min).astimezone().astimezone(UTC)
        filters["until"] = datetime.combine(dates[-1], time.max).astimezone().astimezone(UTC)
    return filters


# ----------------------------------------------------------------------------------- name, tags, note


def _save_edits(run_id: int, prefix: str) -> None:
    # A callback: it runs before the page is drawn again, so the table already shows what was saved.
    if demo_mode():  # the form is not shown in the demo; a stale one is refused too
        st.session_state[f"{prefix}_message"] = ("error", "Not saved: this is a read-only demo.")
        return
    try:
        store.update_run(
            run_id,
            name=st.session_state[f"{prefix}_name"],
            tags=st.session_state[f"{prefix}_tags"],
            note=st.session_state[f"{prefix}_note"],
        )
    except (ValueError, TypeError) as error:
        st.session_state[f"{prefix}_message"] = ("error", f"Not saved: {error}")
    except KeyError:
        st.session_state[f"{prefix}_message"] = ("error", f"Not saved: run #{run_id} no longer exists.")
    else:
        st.session_state[f"{prefix}_message"] = ("success", f"Saved the name, tags and note of run #{run_id}.")


def _edit_form(summary: RunSummary, prefix: str) -> None:
    """A form editing a run's name, tags and note; saving stores them at once (not in the read-only demo)."""
    if demo_mode():
        st.caption("Names, tags and notes cannot be edited in this read-only demo.")
        return
    with st.form(f"{prefix}_form", border=False):
        st.text_input("Name", value=summary.name or "", key=f"{prefix}_name", max_chars=100,
                      placeholder="a short name, e.g. 5-way baseline")
        st.multiselect(
            "Tags", sorted({*store.distinct_values("tag"), *summary.tags}), default=summary.tags,
            key=f"{prefix}_tags", accept_new_options=True, max_selections=MAX_TAGS,
            help=f"Pick tags or type new ones: {TAG_CHARACTERS}, no spaces.",
        )
        st.text_area("Note", value=summary.note or "", key=f"{prefix}_note", height=80)
        st.form_submit_button("Save", key=f"{prefix}_save", on_click=_save_edits, args=(summary.id, prefix))


def _edit_message(prefix: str) -> None:
    """What the last save of that form did (shown outside the form: a popover closes when the page reruns)."""
    message = st.session_state.pop(f"{prefix}_message", None)
    if message:
        kind, text = message
        (st.success if kind == "success" else st.error)(text)


def _edit_label(summary: RunSummary) -> str:
    shown = " · ".join(part for part in (summary.name, ", ".join(summary.tags)) if part)
    return f"Name, tags and note{': ' + shown if shown else ''}"


# ------------------------------------------------------------------------------------------- one run


RERUN_TICKET = "rerun_ticket"


def _start_rerun(run_id: int) -> None:
    """Start the re-run in a worker thread: it goes on and is stored whatever is clicked meanwhile."""
    try:
        device = pick_device()
        ticket = start_rerun(run_executor(), owned_store(), run_id, device=device, loader=cached_loader)
    except KeyError:
        st.session_state["rerun_message"] = ("error", f"Cannot re-run run #{run_id}: it no longer exists.")
    except ValueError as error:  # an unavailable or malformed device (core.device, core.settings)
        st.session_state["rerun_message"] = ("error", f"Cannot choose a device: {error}")
    else:
        st.session_state[RERUN_TICKET] = (run_id, ticket)


def _follow_rerun() -> None:
    """Show a re-run in progress; once it is over, open the new run (also a failed one) at the top of its page."""
    run_id, ticket = st.session_state[RERUN_TICKET]
    new_id, error = follow(ticket, f"Re-running run #{run_id}…")
    del st.session_state[RERUN_TICKET]
    if new_id is None:
        st.session_state["rerun_message"] = ("error", f"Cannot re-run run #{run_id}: {error}")
        return
    if error is None:
        st.session_state["rerun_message"] = ("success", f"Re-run of run #{run_id}: this is the new run #{new_id}.")
    else:
        st.session_state["rerun_message"] = (
            "error", f"The re-run of run #{run_id} failed and was stored as run #{new_id}: {error}"
        )
    _open_run(new_id)
    st.rerun()


def _show_one(raw: str) -> None:
    back, again = st.columns([1, 5], vertical_alignment="center")
    back.button("← All runs", key="back_to_runs", on_click=_close_run)
    try:
        run_id = int(raw)
        detail = store.get_run(run_id)
    except ValueError:
        st.error(f"'{raw}' is not a run id; run ids are whole numbers.")
        return
    except KeyError:
        st.error(f"There is no run #{raw} (it may have been deleted).")
        return
    message = st.session_state.pop("rerun_message", None)
    if message:
        kind, text = message
        (st.success if kind == "success" else st.error)(text)
    again.button("Re-run this episode", key=f"rerun_{run_id}", on_click=_start_rerun, args=(run_id,),
                 disabled=RERUN_TICKET in st.session_state,
                 help="Adapt the stored images again with the same checkpoint file, rules and steps.")
    if RERUN_TICKET in st.session_state:
        _follow_rerun()
    if sign_in_configured():  # who may delete it (core.store.permissions)
        st.caption(f"Made by {detail.owner}." if detail.owner else "No owner: stored before sign-in, or by a "
                   "visitor who had not signed in; only an admin may delete it.")
    # A popover builds its form only when opened: the run opens without loading the form widgets' code.
    with st.popover(_edit_label(detail)):
        _edit_form(detail, f"edit_one_{run_id}")
    _edit_message(f"edit_one_{run_id}")
    render_run(store, detail, key=f"runs_view_{run_id}")


# ------------------------------------------------------------------------------------------ the list


def _confirm_delete(ids: list[int]) -> None:
    st.session_state["pending_delete"] = ids


def _cancel_delete() -> None:
    st.session_state.pop("pending_delete", None)


def _do_delete() -> None:
    ids = st.session_state.pop("pending_delete", [])
    if demo_mode():  # the button is not shown in the demo; a stale confirmation is refused too
        st.session_state[DELETE_MESSAGE] = ("error", "Nothing deleted: this is a read-only demo.")
        return
    try:
        # The store applies the owner-or-admin rule (core.store.permissions): a request with any run that is not
        # this visitor's is refused whole.
        deleted = store.delete_runs(ids, by=current_actor())
    except NotPermitted as refused:
        st.session_state[DELETE_MESSAGE] = ("error", f"Nothing deleted: {refused}")
        return
    st.session_state[DELETE_MESSAGE] = ("success", f"Deleted {deleted} run(s): {', '.join(f'#{i}' for i in ids)}.")
    _set_url_ids(SELECT, [i for i in _url_ids(SELECT)[0] if i not in ids])


def _runs_table(summaries: list[RunSummary]) -> list[int]:
    """The history table with a checkbox per row; returns the ids of the selected runs, in table order."""
    ids = [s.id for s in summaries]
    frame = compare.history_table(summaries, _link_to)
    accuracy_columns = [column for column in frame.columns if column.startswith("accuracy: ")]
    column_config = {
        "run": st.column_config.LinkColumn("run", display_text=r"run=(\d+)$", help="Click a run id to open it"),
        "tags": st.column_config.ListColumn("tags"),
        "when": st.column_config.DatetimeColumn("when", format="YYYY-MM-DD HH:mm:ss"),
        "seconds": st.column_config.NumberColumn("seconds", format="%.2f"),
        **{
            column: st.column_config.NumberColumn(column, format="%.1f%%", help="Accuracy on the labelled queries")
            for column in accuracy_columns
        },
    }
    position = {run_id: row for row, run_id in enumerate(ids)}
    wanted = [position[i] for i in _url_ids(SELECT)[0] if i in position]
    # One table widget per listing: its selection holds row numbers, which mean other runs in another listing.
    listing = hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:12]
    event = st.dataframe(
        frame, hide_index=True, width="stretch", key=f"runs_table_{listing}", column_config=column_config,
        on_select="rerun", selection_mode="multi-row", selection_default={"selection": {"rows": wanted}},
    )
    selected = [ids[row] for row in sorted(event.selection.rows)]
    _set_url_ids(SELECT, selected)
    return selected


def _compare(selected: list[RunSummary], listed: list[RunSummary]) -> None:
    """Curves, settings, grouped accuracy and parallel coordinates of the selected runs."""
    ids = [s.id for s in selected]
    details = store.get_runs(ids[:MAX_DETAILED])
    if len(ids) > MAX_DETAILED:
        st.caption(f"Curves and settings show the first {MAX_DETAILED} selected runs; the groups use all {len(ids)}.")

    st.markdown("#### Support loss and accuracy per inner step")
    left, right = st.columns(2)
    left.plotly_chart(compare.curve_overlay(details, "support_loss"), key="compare_loss", width="stretch")
    right.plotly_chart(compare.curve_overlay(details, "support_accuracy"), key="compare_accuracy", width="stretch")

    layers = compare.trace_layers(details)
    st.markdown("#### α and β per inner step")
    if not layers:
        st.caption("No selected run took an inner step with α/β traces.")
    else:
        layer = st.selectbox(
            "Layer", [compare.MEAN_OVER_LAYERS, *layers], key="compare_layer",
            format_func=lambda name: "mean over all layers" if name is None else name,
        )
        left, right = st.columns(2)
        left.plotly_chart(compare.trace_overlay(details, "alpha", layer), key="compare_alpha", width="stretch")
        right.plotly_chart(compare.trace_overlay(details, "beta", layer), key="compare_beta", width="stretch")

    st.markdown("#### Settings and results")
    only_differences = st.toggle(
        "Only differences", value=True, key="only_differences", disabled=len(details) < 2,
        help="Hide the settings all selected runs share, and the creation time and duration; results stay.",
    )
    rows = compare.comparison_rows(details, only_differences and len(details) > 1)
    st.dataframe(rows, hide_index=True, width="stretch", key="compare_table")

    st.markdown("#### Accuracy by group")
    group_columns = st.columns([3, 2], vertical_alignment="bottom")
    by = group_columns[0].multiselect("Group by", compare.GROUP_FIELDS, default=["rule"], key="group_by")
    everything = group_columns[1].toggle(
        f"All {len(listed)} listed runs", key="group_all", help="Group every run the filters list, not only the selected."
    )
    points = compare.accuracy_points(listed if everything else selected)
    if not points:
        st.caption("None of these runs has an accuracy (their queries were unlabelled, or they failed).")
        return
    groups = compare.group_accuracies(points, by)
    st.dataframe(
        compare.group_table(groups, by), hide_index=True, width="stretch", key="group_table",
        column_config={
            "mean accuracy": st.column_config.NumberColumn(format="%.1f%%"),
            "± 95% CI": st.column_config.NumberColumn(
                format="%.1f%%", help="1.96 · std / √n, std over the group's runs (population std); empty for n = 1"
            ),
        },
    )
    st.caption("One value per run and rule. ± is the half-width of the 95% interval, 1.96 · std / √n.")
    st.markdown("#### Settings → accuracy, one line per run and rule")
    st.plotly_chart(compare.parallel_coordinates(points), key="compare_parallel", width="stretch")


def _selection_actions(selected: list[RunSummary]) -> None:
    ids = [s.id for s in selected]
    stamp = "-".join(str(i) for i in ids[:10]) + ("-more" if len(ids) > 10 else "")
    actions = st.columns(4)
    if len(ids) == 1:
        actions[0].button(f"Open run #{ids[0]}", key="open_selected", type="primary", on_click=_open_run, args=(ids[0],))
    # Built only when clicked: exporting many runs reads all of them.
    actions[1].download_button(
        "Export runs (JSON)", partial(store.export_runs, ids, "json"), file_name=f"runs-{stamp}.json",
        mime="application/json", key="export_json",
    )
    actions[2].download_button(
        "Export runs with traces (CSV)", partial(store.export_runs, ids, "csv"), file_name=f"runs-{stamp}.csv",
        mime="text/csv", key="export_csv", help="One row per step (loss, accuracy) or per layer and step (α, β); "
        "its row_kind column says which.",
    )
    actions[3].download_button(
        "Export predictions (CSV)", partial(store.export_predictions_csv, ids), file_name=f"predictions-{stamp}.csv",
        mime="text/csv", key="export_predictions",
    )
    with st.expander("Name, tags and note"):
        by_id = {s.id: s for s in selected}
        chosen = ids[0]
        if len(ids) > 1:
            chosen = st.selectbox("Run", ids, format_func=lambda i: compare.run_title(by_id[i]), key="edit_which")
        _edit_form(by_id[chosen], f"edit_list_{chosen}")
        _edit_message(f"edit_list_{chosen}")
    pending = st.session_state.get("pending_delete")
    if demo_mode():
        st.caption("Deleting runs is off in this read-only demo.")
    elif pending:
        st.warning(f"Delete {len(pending)} run(s) ({', '.join(f'#{i}' for i in pending)})? This cannot be undone.")
        yes, no = st.columns(2)
        yes.button("Yes, delete", key="delete_confirm", type="primary", on_click=_do_delete)
        no.button("Cancel", key="delete_cancel", on_click=_cancel_delete)
    else:
        st.button(f"Delete {len(ids)} selected run(s)…", key="delete", on_click=_confirm_delete, args=(ids,))


def _show_list() -> None:
    message = st.session_state.pop(DELETE_MESSAGE, None)
    if message:
        kind, text = message
        (st.success if kind == "success" else st.error)(text)
    if not store.list_runs(limit=1):
        st.info(
            "No runs yet. Open the Adapt page, pick a checkpoint, choose a benchmark episode or upload images for "
            "a few classes, and press Run: every run is stored here."
        )
        st.page_link(ADAPT_PAGE, label="Go to Adapt", icon=":material/science:")
        return
    choices = _Choices()
    problems = choices.url_problems()
    if problems:
        st.warning("Ignored in the address: " + "; ".join(problems) + ".")
    summaries = store.list_runs(**_filters(choices), limit=MAX_LISTED)
    if not summaries:
        st.info("No run matches these filters.")
        return
    if len(summaries) == MAX_LISTED:
        st.caption(f"The newest {MAX_LISTED} matching runs; narrow the filters (e.g. the dates) to reach older ones.")
    selected_ids = _runs_table(summaries)
    if not selected_ids:
        st.caption("Click a run id to open it. Tick runs to compare their curves and settings, export or delete them.")
        return
    by_id = {s.id: s for s in summaries}
    selected = [by_id[i] for i in selected_ids]
    st.subheader(f"{len(selected)} selected run(s)")
    _selection_actions(selected)
    _compare(selected, summaries)


st.title("Runs")
requested = st.query_params.get(RUN)
if requested:
    _show_one(requested)
else:
    _show_list()
