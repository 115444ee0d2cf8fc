"""Second-order MAML (Finn et al. 2017, eq. 1 differentiated exactly): ``meta.estimator = "maml"``.

The support-loss gradients of the inner loop are taken with ``create_graph=True``, so the meta-gradient includes
the Hessian-vector terms: ``d/dθ L_query(U^K(θ))`` with every inner update ``U`` of the learner's rule
differentiated, rule meta-parameters (per-step rates, Meta-SGD rates, ALFA's generator) included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.data.task import Task
from core.learner import Learner
from core.meta.estimator import LAST_STEP, MetaGradient, QueryObjective, register_estimator
from core.meta.unroll import EXECUTIONS, unrolled_meta_grad


@dataclass(frozen=True)
class MAMLOptions:
    """Second-order MAML has no settings of its own; how its tasks run is ``meta.batched`` / ``meta.recompute``."""


@register_estimator("maml", "MAML (second order)", MAMLOptions, executions=EXECUTIONS)
@dataclass
class MAML:
    learner: Learner
    inner_steps: int
    head_init: str
    options: MAMLOptions
    execution: str = "loop"

    def meta_grad(self, tasks: Sequence[Task], objective: QueryObjective = LAST_STEP) -> MetaGradient:
        return unrolled_meta_grad(
            self.learner, tasks, objective, self.inner_steps, self.head_init, True, self.execution
        )
