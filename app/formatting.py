"""Formatting shared by every page: percentages, local times, rule names."""

from __future__ import annotations

from datetime import datetime

from core.rules import rule_label as registered_rule_label


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def when(moment: datetime) -> str:
    """A stored UTC time in the server's local time zone, to the second."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def rule_label(rule: str) -> str:
    """The rule's label from the rule registry (a name no rule is registered under is shown as it is)."""
    return registered_rule_label(rule)
