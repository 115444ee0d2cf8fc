"""Formatting shared by every page: percentages, local times, rule names."""

from __future__ import annotations

from datetime import datetime

from core.rules import RULE_LABELS


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def when(moment: datetime) -> str:
    """A stored UTC time in the server's local time zone, to the second."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def rule_label(rule: str) -> str:
    return RULE_LABELS.get(rule, rule)
