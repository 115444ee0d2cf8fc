"""Work done once when the dashboard server starts, so that its first visitor does not wait for it.

Streamlit imports a page's modules on the first visit. The engine's (torch above all: about 3 s on a 2-core
machine) and a first adaptation (loading the default checkpoint, torch choosing its kernels) made the first page
take 8 to 10 s and the first Run twice as long as later ones. ``python -m app`` calls :func:`warm_up` before the
server listens; anything that fails here is only reported: the page then does the same work, and says what is
wrong, when a visitor asks for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# Streamlit warns that its caches and context are missing when they are used before the server runs, which is
# the point of warming up; the caches it then creates are the ones the pages use.
_QUIET_LOGGERS = ("streamlit.runtime.caching.cache_data_api", "streamlit.runtime.scriptrunner_utils.script_run_context")


@dataclass
class WarmUpReport:
    """How long each step of :func:`warm_up` took, and the steps that failed (with why)."""

    seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        done = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in self.seconds.items())
        failed = "" if not self.problems else "; not warmed: " + "; ".join(self.problems)
        return f"dashboard warmed up in {sum(self.seconds.values()):.1f} s ({done}){failed}"


def _step(report: WarmUpReport, name: str, work: Callable[[], object]) -> None:
    started = time.perf_counter()
    try:
        work()
    except Exception as error:  # noqa: BLE001 - warming up must never stop the server from starting
        report.problems.append(f"{name}: {error}")
    else:
        report.seconds[name] = time.perf_counter() - started


def _import_engine() -> None:
    # Everything the pages import, in the order they need it (app.resources pulls torch and the store in).
    import plotly.graph_objects  # noqa: F401

    import app.charts
    import app.checkpoint_view
    import app.compare
    import app.resources
    import app.sources.benchmark
    import app.sources.own_images
    import app.trace_view
    import app.views  # noqa: F401
    import core.runs  # noqa: F401


def _open_store() -> None:
    from app.resources import get_store

    get_store()  # connects and brings the schema to the newest migration


def _first_adaptation() -> None:
    """Load the default checkpoint's learners into the page's cache and adapt a small episode with each."""
    import torch

    from app.resources import cached_loader
    from core.adapt import adapt
    from core.checkpoint import find_checkpoints, supported_rules
    from core.data.task import Task
    from core.device import pick_device

    entry = next((e for e in find_checkpoints() if e.metadata is not None and e.metadata.is_image_classifier), None)
    if entry is None or entry.metadata is None or entry.metadata.image is None:
        return
    device = pick_device()
    image = entry.metadata.image
    shape = (image.channels, image.size, image.size)
    generator = torch.Generator().manual_seed(0)
    episode = Task(
        support_x=torch.rand((2, *shape), generator=generator),
        support_y=torch.tensor([0, 1]),
        query_x=torch.rand((2, *shape), generator=generator),
        query_y=torch.tensor([0, 1]),
        class_names=["a", "b"],
    )
    for rule in supported_rules(entry.metadata):
        learner, _metadata = cached_loader(entry.path, rule, device)
        adapt(learner, episode, steps=1, device=device)


def _first_figures() -> None:
    import plotly.graph_objects as go

    # Plotly validates every property on first use of a trace type; do it for the types the run view draws.
    go.Figure([go.Scatter(x=[0, 1], y=[0, 1]), go.Heatmap(z=[[0, 1]])]).to_plotly_json()


@contextmanager
def _quiet_streamlit() -> Iterator[None]:
    import streamlit  # noqa: F401 - configures its loggers, whose levels are then lowered for a moment

    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def warm_up() -> WarmUpReport:
    report = WarmUpReport()
    with _quiet_streamlit():
        _step(report, "imports", _import_engine)
        _step(report, "run store", _open_store)
        _step(report, "default checkpoint", _first_adaptation)
        _step(report, "figures", _first_figures)
    return report
