"""ANIL, Almost No Inner Loop (Raghu et al., "Rapid learning or feature reuse?", ICLR 2020, section 4).

The inner loop adapts the classifier head only, with MAML's plain gradient step on the head's weight and bias
(``theta_head <- theta_head - lr * grad``); the features keep their meta-learned values for every task. The
outer loop still meta-trains everything: the backbone's gradient reaches it through the query forward pass and,
at second order, through the head's inner gradients, which depend on the features. The paper finds this matches
MAML's accuracy, i.e. MAML's inner loop mostly reuses features rather than learning new ones. Without
meta-learned parameters of its own, ANIL also runs from any checkpoint's backbone (a head-only baseline).
"""

from __future__ import annotations

from core.rules.registry import AdaptedTensors, Capabilities, register_rule
from core.rules.sgd import SGDOptions, SGDRule


@register_rule(
    "anil", label="ANIL (head only)", options=SGDOptions,
    capabilities=Capabilities(meta_learned=False, adapts=AdaptedTensors.HEAD), colour="#ff7f0e", order=50,
    selected_by_default=False,  # offered beside every checkpoint's rule; the page's default stays rule vs SGD
)
class ANILRule(SGDRule):
    """SGD on the tensors it is given, which are the head's (``Capabilities.adapts`` = head)."""
