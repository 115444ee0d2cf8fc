"""FO-B-MAML with the symmetric difference: ``meta.estimator = "fo_b_maml_sym"``.

``lambda (y_-delta - y_+delta) / (2 delta)`` for the initialisation, bias O(delta^2) against the forward
estimator's O(delta), for a second perturbed inner solve in place of the unperturbed one (the same cost). What every
meta-parameter gets, the refusals and what is reported: ``core.meta.fo_b_maml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.data.task import Task
from core.learner import Learner
from core.meta.estimator import LAST_STEP, MetaGradient, QueryObjective, register_estimator
from core.meta.fo_b_maml import PerturbationOptions, perturbed_meta_grad


@register_estimator(
    "fo_b_maml_sym", "FO-B-MAML (symmetric)", PerturbationOptions,
    needs_proximal=True, rule_meta_gradients=False, multi_step_loss=False,
)
@dataclass
class FOBMAMLSymmetric:
    learner: Learner
    inner_steps: int
    head_init: str
    options: PerturbationOptions
    execution: str = "loop"

    def meta_grad(self, tasks: Sequence[Task], objective: QueryObjective = LAST_STEP) -> MetaGradient:
        delta = float(self.options.delta)
        return perturbed_meta_grad(
            "fo_b_maml_sym", self.learner, tasks, objective, self.inner_steps, self.head_init, delta, -delta
        )
