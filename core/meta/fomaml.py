"""First-order MAML (Finn et al. 2017, section 5.2): ``meta.estimator = "fomaml"``.

The inner gradients are constants (no ``create_graph``): for plain SGD the meta-gradient of the initial weights is
the query-loss gradient at the adapted weights. A rule's meta-parameters (per-step rates, Meta-SGD rates, ALFA's
generator) still get the gradient of their direct effect on each update, with the gradient it scales held fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.data.task import Task
from core.learner import Learner
from core.meta.estimator import LAST_STEP, MetaGradient, QueryObjective, register_estimator
from core.meta.unroll import EXECUTIONS, unrolled_meta_grad


@dataclass(frozen=True)
class FOMAMLOptions:
    """First-order MAML has no settings of its own; how its tasks run is ``meta.batched`` / ``meta.recompute``."""


@register_estimator("fomaml", "First-order MAML", FOMAMLOptions, executions=EXECUTIONS)
@dataclass
class FOMAML:
    learner: Learner
    inner_steps: int
    head_init: str
    options: FOMAMLOptions
    execution: str = "loop"

    def meta_grad(self, tasks: Sequence[Task], objective: QueryObjective = LAST_STEP) -> MetaGradient:
        return unrolled_meta_grad(
            self.learner, tasks, objective, self.inner_steps, self.head_init, False, self.execution
        )
