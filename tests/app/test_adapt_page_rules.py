"""Adapt page (AppTest): the rule choices come from the rule registry, so ANIL is offered for a MAML checkpoint."""

from __future__ import annotations

from tests.app.builders import save_tiny_checkpoint
from tests.app.test_adapt_page import assert_clean, run_button, texts, upload_episode


def test_anil_is_offered_beside_a_maml_checkpoints_rule_and_runs(dashboard) -> None:
    checkpoint = save_tiny_checkpoint(dashboard.checkpoints / "maml.safetensors", rule={"name": "sgd", "lr": 0.4},
                                      name="tiny-maml")
    at = dashboard.app().run()
    assert_clean(at)
    rules = at.multiselect(key=f"rules_{checkpoint}")
    assert rules.options == ["SGD (MAML)", "ANIL (head only)"]  # shown by label, in the registry's order
    assert rules.value == ["sgd"]  # offered, not preselected: the default comparison is unchanged
    rules.set_value(["sgd", "anil"]).run()
    upload_episode(at, query_labels=[0, 1, 2])
    run_button(at).click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    [summary] = dashboard.store().list_runs()
    detail = dashboard.store().get_run(summary.id)
    assert detail.status == "succeeded" and [a.rule for a in detail.adaptations] == ["sgd", "anil"]
    assert [m.label for m in at.metric] == ["SGD (MAML) accuracy", "ANIL (head only) accuracy"]
    # ANIL adapted the head alone: its per-step traces name only the head's tensors.
    anil = detail.adaptations[1]
    assert anil.traces and all(set(step) == {"head.weight", "head.bias"} for step in anil.traces)
