"""Run history rows and the comparison of stored runs (Runs page)."""

from __future__ import annotations

from typing import Any

from app.formatting import percent, rule_label, when
from core.store import RunDetail, RunSummary


def run_title(summary: RunSummary) -> str:
    where = summary.dataset or summary.source
    return (
        f"#{summary.id} · {when(summary.created_at)} · {where} · {summary.n_way}-way {summary.k_shot}-shot · "
        f"{summary.checkpoint_name} · {summary.status}"
    )


def accuracies_text(summary: RunSummary) -> str:
    return ", ".join(f"{rule_label(rule)} {percent(acc)}" for rule, acc in summary.accuracies.items()) or "—"


def run_config(detail: RunDetail) -> dict[str, Any]:
    """The settings of a run as flat (label -> value) pairs, for comparison tables."""
    provenance = detail.config.get("provenance") or {}
    values: dict[str, Any] = {
        "status": detail.status,
        "created": when(detail.created_at),
        "source": detail.source,
        "dataset": detail.dataset,
        "split": detail.split,
        "way": detail.n_way,
        "shot": detail.k_shot,
        "queries": detail.config.get("queries", detail.n_query),
        "seed": detail.seed,
        "checkpoint": detail.checkpoint_name,
        "checkpoint file": detail.checkpoint.file_sha256[:12] if detail.checkpoint else None,
        "device": detail.device,
        "steps": detail.steps,
        "head init": detail.config.get("head_init") or "auto",
        "rules": ", ".join(rule_label(r) for r in detail.config.get("rules", detail.rules)),
        "classes": ", ".join(detail.class_names),
        "alphabets": ", ".join(provenance.get("alphabets") or []) or None,
    }
    for adaptation in detail.adaptations:
        values[f"accuracy: {adaptation.rule_label}"] = percent(adaptation.accuracy)
        final = adaptation.support_loss[-1] if adaptation.support_loss else None
        values[f"final support loss: {adaptation.rule_label}"] = None if final is None else f"{final:.4g}"
    values["total seconds"] = None if detail.total_seconds is None else round(detail.total_seconds, 2)
    return {key: ("—" if value is None else str(value)) for key, value in values.items()}


def comparison_rows(details: list[RunDetail], only_differences: bool) -> list[dict[str, str]]:
    configs = [run_config(detail) for detail in details]
    fields: list[str] = []
    for config in configs:
        fields.extend(field for field in config if field not in fields)
    rows = []
    for field in fields:
        values = [config.get(field, "—") for config in configs]
        if only_differences and len(set(values)) <= 1:
            continue
        rows.append({"setting": field, **{f"run #{d.id}": v for d, v in zip(details, values)}})
    return rows
