"""Runs page: the history of stored runs with filters; open one (also ``?run=<id>``), compare, export, delete."""

from __future__ import annotations

from datetime import UTC, datetime, time

import streamlit as st

from app import charts
from app.compare import accuracies_text, comparison_rows, run_title
from app.formatting import rule_label, when
from app.resources import cached_loader, get_store
from app.views import ADAPT_PAGE, render_run
from core.data.images import ImageError
from core.device import pick_device
from core.runs import RunFailed, rerun
from core.store import RUN_STATUSES, SOURCES
from models.checkpoint import CheckpointError

INPUT_ERRORS = (ValueError, ImageError, CheckpointError, FileNotFoundError, KeyError)

store = get_store()


def _close_run() -> None:
    st.query_params.pop("run", None)


def _open_run(run_id: int) -> None:
    st.query_params["run"] = str(run_id)


def _open_chosen() -> None:
    # Read the selectbox's current value (bound arguments would be those of the previous rerun).
    _open_run(st.session_state["open_id"])


def _show_one(raw: str) -> None:
    st.button("← All runs", key="back_to_runs", on_click=_close_run)
    try:
        run_id = int(raw)
        detail = store.get_run(run_id)
    except ValueError:
        st.error(f"'{raw}' is not a run id; run ids are whole numbers.")
        return
    except KeyError:
        st.error(f"There is no run #{raw} (it may have been deleted).")
        return
    render_run(store, detail, key=f"runs_view_{run_id}")
    st.divider()
    if st.button("Re-run this episode", key=f"rerun_{run_id}",
                 help="Adapt the stored images again with the same checkpoint file, rules and steps."):
        with st.spinner("Re-running…"):
            try:
                device = pick_device()
                new_id = rerun(store, run_id, device=device, loader=cached_loader)
            except RunFailed as failure:
                st.error(f"The re-run was stored as run #{failure.run_id} and failed: {failure.error}")
            except INPUT_ERRORS as error:
                st.error(f"Cannot re-run run #{run_id}: {error}")
            except RuntimeError as error:  # torch's answer to a malformed FEWSHOT_DEVICE
                st.error(f"Cannot choose a device: {error}")
            else:
                st.success(f"Stored as run #{new_id}.")
                st.button(f"Open run #{new_id}", key="open_rerun", on_click=_open_run, args=(new_id,))


def _filters() -> dict:
    with st.expander("Filters", expanded=False):
        first = st.columns(4)
        dates = first[0].date_input("Date range", value=(), key="f_dates", format="YYYY-MM-DD")
        sources = first[1].multiselect("Source", SOURCES, key="f_source")
        datasets = first[2].multiselect(
            "Dataset", [d for d in store.distinct_values("dataset") if d is not None], key="f_dataset"
        )
        statuses = first[3].multiselect("Status", RUN_STATUSES, key="f_status")
        second = st.columns(5)
        ways = second[0].multiselect("Way", store.distinct_values("n_way"), key="f_way")
        shots = second[1].multiselect("Shot", store.distinct_values("k_shot"), key="f_shot")
        checkpoints = second[2].multiselect("Checkpoint", store.distinct_values("checkpoint_name"), key="f_checkpoint")
        rules = second[3].multiselect("Rule", store.distinct_values("rule"), format_func=rule_label, key="f_rule")
        min_accuracy = second[4].slider("Min accuracy (%)", 0, 100, 0, key="f_accuracy")
    filters: dict = {
        "source": sources or None,
        "dataset": datasets or None,
        "status": statuses or None,
        "n_way": ways or None,
        "k_shot": shots or None,
        "checkpoint_name": checkpoints or None,
        "rule": rules or None,
        "min_accuracy": min_accuracy / 100 if min_accuracy else None,
    }
    if len(dates) >= 1:
        # Calendar days in the server's time zone, converted to the store's UTC.
        filters["since"] = datetime.combine(dates[0], time.min).astimezone().astimezone(UTC)
        filters["until"] = datetime.combine(dates[-1], time.max).astimezone().astimezone(UTC)
    return filters


def _confirm_delete() -> None:
    st.session_state["pending_delete"] = list(st.session_state.get("selected_runs", []))


def _cancel_delete() -> None:
    st.session_state.pop("pending_delete", None)


def _do_delete() -> None:
    ids = st.session_state.pop("pending_delete", [])
    deleted = store.delete_runs(ids)
    st.session_state["deleted_message"] = f"Deleted {deleted} run(s): {', '.join(f'#{i}' for i in ids)}."
    st.session_state["selected_runs"] = [i for i in st.session_state.get("selected_runs", []) if i not in ids]


def _show_list() -> None:
    if st.session_state.get("deleted_message"):
        st.success(st.session_state.pop("deleted_message"))
    if not store.list_runs(limit=1):
        st.info(
            "No runs yet. Open the Adapt page, pick a checkpoint, choose a benchmark episode or upload images for "
            "a few classes, and press Run: every run is stored here."
        )
        st.page_link(ADAPT_PAGE, label="Go to Adapt", icon=":material/science:")
        return
    filters = _filters()
    summaries = store.list_runs(**filters, limit=1000)
    if not summaries:
        st.info("No run matches these filters.")
        return
    st.dataframe(
        [
            {
                "id": s.id,
                "when": when(s.created_at),
                "status": s.status,
                "source": s.source,
                "dataset": s.dataset or "—",
                "way": s.n_way,
                "shot": s.k_shot,
                "checkpoint": s.checkpoint_name,
                "accuracy": accuracies_text(s),
                "seconds": None if s.total_seconds is None else round(s.total_seconds, 2),
                "device": s.device,
                "error": s.error or "",
            }
            for s in summaries
        ],
        hide_index=True,
        width="stretch",
        key="runs_table",
    )
    by_id = {s.id: s for s in summaries}
    if "selected_runs" in st.session_state:  # keep only runs still listed (filters may have changed)
        st.session_state["selected_runs"] = [i for i in st.session_state["selected_runs"] if i in by_id]
    open_column, button_column = st.columns([4, 1], vertical_alignment="bottom")
    open_column.selectbox("Open a run", list(by_id), format_func=lambda i: run_title(by_id[i]), key="open_id")
    button_column.button("Open run", key="open_run", on_click=_open_chosen, type="primary")

    selected = st.multiselect(
        "Select runs to compare, export or delete", list(by_id), format_func=lambda i: run_title(by_id[i]),
        key="selected_runs",
    )
    if not selected:
        st.caption("Select runs above to compare their support-loss curves and settings, export or delete them.")
        return

    details = [store.get_run(i) for i in selected]
    st.subheader(f"{len(selected)} selected run(s)")
    st.plotly_chart(charts.overlay_support_loss(details), key="compare_loss", width="stretch")
    only_differences = st.toggle(
        "Only differences", value=True, key="only_differences", disabled=len(details) < 2,
        help="Hide the settings that all selected runs share.",
    )
    rows = comparison_rows(details, only_differences and len(details) > 1)
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch", key="compare_table")
    else:
        st.caption("The selected runs have the same settings.")

    exports = st.columns(3)
    stamp = "-".join(str(i) for i in selected[:10]) + ("-more" if len(selected) > 10 else "")
    exports[0].download_button(
        "Export runs (JSON)", store.export_runs(selected, "json"), file_name=f"runs-{stamp}.json",
        mime="application/json", key="export_json",
    )
    exports[1].download_button(
        "Export runs with traces (CSV)", store.export_runs(selected, "csv"), file_name=f"runs-{stamp}.csv",
        mime="text/csv", key="export_csv",
    )
    exports[2].download_button(
        "Export predictions (CSV)", store.export_predictions_csv(selected), file_name=f"predictions-{stamp}.csv",
        mime="text/csv", key="export_predictions",
    )

    pending = st.session_state.get("pending_delete")
    if pending:
        st.warning(f"Delete {len(pending)} run(s) ({', '.join(f'#{i}' for i in pending)})? This cannot be undone.")
        yes, no = st.columns(2)
        yes.button("Yes, delete", key="delete_confirm", type="primary", on_click=_do_delete)
        no.button("Cancel", key="delete_cancel", on_click=_cancel_delete)
    else:
        st.button(f"Delete {len(selected)} selected run(s)…", key="delete", on_click=_confirm_delete)


st.title("Runs")
requested = st.query_params.get("run")
if requested:
    _show_one(requested)
else:
    _show_list()
