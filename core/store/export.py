"""Exports of stored runs: JSON (everything but image bytes) and CSV (traces, predictions).

Works on the store's plain records only; :meth:`core.store.Store.export_runs` and
:meth:`~core.store.Store.export_predictions_csv` read the runs and call these.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from core.store.records import STEP_LEVEL_LAYER, RunDetail

# What a row of the traces CSV is, in its ``row_kind`` column:
#   "step"  - a step-level row of an adaptation: support_loss/support_accuracy before that step (steps + 1 of
#             them per adaptation, the last one after the last step); ``layer`` is empty.
#   "layer" - one tensor's alpha/beta at that step (``layer`` names the tensor).
#   "run"   - a run without adaptations (a run that failed before any rule finished): only its run columns.
CSV_ROW_KINDS: tuple[str, ...] = ("step", "layer", "run")

# Columns of ``export_runs(ids, "csv")``: one row per (run, adaptation, step, layer), each with a ``row_kind``
# from CSV_ROW_KINDS. ``adaptation`` is the adaptation's position within the run; ``name`` and ``tags`` (joined
# with spaces) are the user's.
TRACE_CSV_COLUMNS: tuple[str, ...] = (
    "run_id", "row_kind", "created_at", "name", "tags", "source", "dataset", "split", "n_way", "k_shot", "n_query",
    "checkpoint_name", "device", "status", "adaptation", "rule", "rule_label", "steps", "head_init", "accuracy",
    "query_loss", "seconds", "step", "layer", "alpha", "beta", "support_loss", "support_accuracy",
)
# Columns of ``export_predictions_csv``: one row per (run, adaptation, query). ``probabilities`` is a JSON
# list in class order; ``truth``/``truth_class``/``correct`` are empty for an unlabelled query.
PREDICTION_CSV_COLUMNS: tuple[str, ...] = (
    "run_id", "adaptation", "rule", "rule_label", "query_position", "source_name", "predicted",
    "predicted_class", "truth", "truth_class", "correct", "confidence", "probabilities",
)


def run_detail_to_dict(detail: RunDetail) -> dict[str, Any]:
    """A JSON-ready dict of a run: datetimes as ISO 8601 strings, NaN and infinities as None."""
    return _json_ready(asdict(detail))


def runs_json(details: Iterable[RunDetail]) -> bytes:
    """A JSON list of :func:`run_detail_to_dict` objects, UTF-8."""
    return json.dumps([run_detail_to_dict(d) for d in details], indent=2, allow_nan=False).encode()


def runs_csv(details: Iterable[RunDetail]) -> bytes:
    """The traces CSV (columns ``TRACE_CSV_COLUMNS``), UTF-8."""
    return _csv_bytes(TRACE_CSV_COLUMNS, (row for detail in details for row in _trace_csv_rows(detail)))


def predictions_csv(details: Iterable[RunDetail]) -> bytes:
    """The predictions CSV (columns ``PREDICTION_CSV_COLUMNS``), UTF-8."""
    return _csv_bytes(PREDICTION_CSV_COLUMNS, (row for detail in details for row in _prediction_csv_rows(detail)))


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_bytes(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _trace_csv_rows(detail: RunDetail) -> Iterator[dict[str, Any]]:
    run_columns = {
        "run_id": detail.id,
        "created_at": detail.created_at.isoformat(),
        "name": detail.name,
        "tags": " ".join(detail.tags),
        "source": detail.source,
        "dataset": detail.dataset,
        "split": detail.split,
        "n_way": detail.n_way,
        "k_shot": detail.k_shot,
        "n_query": detail.n_query,
        "checkpoint_name": detail.checkpoint_name,
        "device": detail.device,
        "status": detail.status,
    }
    if not detail.adaptations:
        yield {**run_columns, "row_kind": "run"}
        return
    for position, adaptation in enumerate(detail.adaptations):
        columns = {
            **run_columns,
            "adaptation": position,
            "rule": adaptation.rule,
            "rule_label": adaptation.rule_label,
            "steps": adaptation.steps,
            "head_init": adaptation.head_init,
            "accuracy": adaptation.accuracy,
            "query_loss": adaptation.query_loss,
            "seconds": adaptation.seconds,
        }
        for step in range(max(len(adaptation.support_loss), len(adaptation.traces))):
            if step < len(adaptation.support_loss):
                yield {
                    **columns,
                    "row_kind": "step",
                    "step": step,
                    "layer": STEP_LEVEL_LAYER,
                    "support_loss": adaptation.support_loss[step],
                    "support_accuracy": adaptation.support_accuracy[step],
                }
            if step < len(adaptation.traces):
                for layer, values in adaptation.traces[step].items():
                    yield {
                        **columns,
                        "row_kind": "layer",
                        "step": step,
                        "layer": layer,
                        "alpha": values["alpha"],
                        "beta": values["beta"],
                    }


def _prediction_csv_rows(detail: RunDetail) -> Iterator[dict[str, Any]]:
    query_names = {item.position: item.source_name for item in detail.items if item.role == "query"}
    query_positions = sorted(query_names)  # predictions were stored in this order

    def class_name(index: int | None) -> str | None:
        if index is None or not 0 <= index < len(detail.class_names):
            return None
        return detail.class_names[index]

    for position, adaptation in enumerate(detail.adaptations):
        truths = adaptation.truths or [None] * len(adaptation.predictions)
        for query_position, predicted, probabilities, truth, confidence in zip(
            query_positions, adaptation.predictions, adaptation.probabilities, truths, adaptation.confidences
        ):
            yield {
                "run_id": detail.id,
                "adaptation": position,
                "rule": adaptation.rule,
                "rule_label": adaptation.rule_label,
                "query_position": query_position,
                "source_name": query_names[query_position],
                "predicted": predicted,
                "predicted_class": class_name(predicted),
                "truth": truth,
                "truth_class": class_name(truth),
                "correct": None if truth is None else int(predicted == truth),
                "confidence": confidence,
                "probabilities": json.dumps(probabilities),
            }
