"""Following a run that adapts in a worker thread (``core.runs.RunTicket``): per-rule and per-step progress."""

from __future__ import annotations

import time

import streamlit as st

from core.runs import RunTicket

POLL_SECONDS = 0.02  # how often the page looks at the ticket; the run itself never waits for the page


def progress_text(ticket: RunTicket) -> tuple[str, float]:
    """What the run is doing now, and the share of it done (rules finished plus steps of the current one)."""
    event = ticket.latest()
    if event is None:
        return "Starting…", 0.0
    where = f"{event.label} ({event.index + 1}/{event.total})"
    within = event.step / event.steps if event.steps else (1.0 if event.stage == "done" else 0.0)
    fraction = min(1.0, (event.index + within) / max(event.total, 1))
    if event.stage == "loading":
        return f"{where}: loading the checkpoint…", fraction
    if event.stage == "adapting":
        return f"{where}: step {event.step}/{event.steps}", fraction
    if event.stage == "done":
        return f"{where}: done in {event.seconds:.2f} s", fraction
    return f"{where}: failed", fraction


def follow(ticket: RunTicket, title: str = "Adapting…") -> tuple[int | None, str | None]:
    """Show the run's progress until it ends and return its outcome (``RunTicket.outcome``).

    A rerun of the page meanwhile (any click) stops this loop, never the run: the next script run finds the
    ticket in the session and follows it again.
    """
    with st.status(title, expanded=True) as status:
        bar = st.progress(0.0)
        finished = st.empty()
        seen = -1
        while not ticket.done:
            if len(ticket.events) != seen:
                seen = len(ticket.events)
                text, fraction = progress_text(ticket)
                status.update(label=text)
                bar.progress(fraction)
                finished.markdown("  \n".join(
                    f"✓ {e.label}: {e.seconds:.2f} s"
                    + ("" if e.accuracy is None else f", accuracy {100 * e.accuracy:.1f}%")
                    for e in ticket.events if e.stage == "done"
                ))
            time.sleep(POLL_SECONDS)
        run_id, error = ticket.outcome()
        if error is None:
            status.update(label=f"Run #{run_id} stored", state="complete", expanded=False)
        else:
            status.update(label="The run failed" if run_id else "Nothing was run", state="error", expanded=False)
    return run_id, error
