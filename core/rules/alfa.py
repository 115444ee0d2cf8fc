"""ALFA: Adaptive Learning of hyperparameters for Fast Adaptation (Baik et al., NeurIPS 2020).

Implements eq. (4) and (7) of the paper as the authors' public code does (see shared/reference.md):

    tau_bar_j = [mean(theta_1..N), mean(grad_1..N).detach()]                (2N inputs)
    (alpha~, beta~) = g_phi(tau_bar_j)          g_phi = Linear(2N,2N) - ReLU - Linear(2N,2N)
    theta_l <- (1 - beta~_l * beta0_{j,l}) * theta_l - alpha~_l * alpha0_{j,l} * grad_l

``alpha0`` / ``beta0`` are the per-step per-layer post-multipliers (init: base rate 0.01 and
weight-decay * rate = 5e-4 * 0.01). The random-initialisation variant (``alfa_random``) keeps the backbone
frozen and adds a meta-learned per-element decay ``B`` (init 5e-6) that multiplies beta~, with beta0 starting
at 1.0:

    theta_l <- (1 - B_l ⊙ beta~_l * beta0_{j,l}) * theta_l - alpha~_l * alpha0_{j,l} * grad_l

``generator_init="identity"`` (an option, not the authors' choice) zeroes the generator's last layer and
sets its bias to one, so training starts from SGD with the post-multipliers as per-layer rates.

Deviation from the code: the post-multipliers have ``steps`` entries (the code allocates ``steps + 1``
and never reads the last).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.rules.base import InnerRule, Params, StepTrace, param_key
from core.rules.registry import Capabilities, register_rule

GENERATOR_INITS = ("default", "identity")


@dataclass(frozen=True)
class ALFAOptions:
    steps: int = 5  # the number of post-multiplier rows; a training config defaults it to meta.inner_steps
    lr: float = 0.01  # alpha0's initial value
    weight_decay: float = 5e-4  # beta0 starts at weight_decay * lr (alfa_random: B does)
    generator_init: str = "default"  # "default": PyTorch's init, as the authors' code; or "identity"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        if self.generator_init not in GENERATOR_INITS:
            raise ValueError(f"generator_init must be 'default' or 'identity', not {self.generator_init!r}")


@register_rule(
    "alfa", label="ALFA", options=ALFAOptions,
    capabilities=Capabilities(meta_learned=True, reads_head_weights=True), colour="#d62728", order=30,
)
class ALFARule(InnerRule):
    options: ALFAOptions
    random_init = False

    def __init__(self, layer_names: list[str], shapes: dict[str, torch.Size], options: ALFAOptions) -> None:
        super().__init__(layer_names, shapes, options)
        self.steps = int(options.steps)
        lr, weight_decay = float(options.lr), float(options.weight_decay)
        n_layers = len(self.layer_names)
        self.generator = nn.Sequential(
            nn.Linear(2 * n_layers, 2 * n_layers), nn.ReLU(), nn.Linear(2 * n_layers, 2 * n_layers)
        )
        if options.generator_init == "identity":
            # Start as the plain rule theta <- (1 - beta0) theta - alpha0 grad (alpha~ = beta~ = 1 for every
            # input): the generator then learns task-dependent corrections instead of first having to undo
            # random, possibly negative, rates.
            with torch.no_grad():
                self.generator[2].weight.zero_()
                self.generator[2].bias.fill_(1.0)
        beta0 = 1.0 if self.random_init else weight_decay * lr
        self.alpha0 = nn.Parameter(torch.full((self.steps, n_layers), lr))
        self.beta0 = nn.Parameter(torch.full((self.steps, n_layers), beta0))
        if self.random_init:
            self.decay = nn.ParameterDict(
                {
                    param_key(n): nn.Parameter(torch.full(tuple(self.shapes[n]), weight_decay * lr))
                    for n in self.layer_names
                }
            )

    def generator_input(self, params: Params, grads: Params) -> torch.Tensor:
        """The task learning state tau_bar: N weight means (differentiable), then N gradient means (detached)."""
        weight_means = torch.stack([params[n].mean() for n in self.layer_names])
        grad_means = torch.stack([grads[n].detach().mean() for n in self.layer_names])
        return torch.cat([weight_means, grad_means])

    def generate(self, params: Params, grads: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha~, beta~), one value per updated tensor: the first N outputs, then the last N."""
        out = self.generator(self.generator_input(params, grads))
        n_layers = len(self.layer_names)
        return out[:n_layers], out[n_layers:]

    def _decay_for(self, name: str, like: torch.Tensor) -> torch.Tensor:
        decay = self.decay[param_key(name)]
        if decay.shape == like.shape:
            return decay
        # Head of an episode with another class count: the per-class rows are exchangeable, so use their mean.
        return decay.mean(dim=0, keepdim=True).expand_as(like)

    def step(self, params: Params, grads: Params, step_index: int, state: dict[str, Any]):
        j = min(step_index, self.steps - 1)
        alpha_tilde, beta_tilde = self.generate(params, grads)
        alpha = alpha_tilde * self.alpha0[j]
        beta_scale = beta_tilde * self.beta0[j]
        trace = StepTrace()
        new = {}
        for index, name in enumerate(self.layer_names):
            shrink = beta_scale[index]
            if self.random_init:
                shrink = self._decay_for(name, params[name]) * shrink
            keep = 1 - shrink
            new[name] = keep * params[name] - alpha[index] * grads[name]
            trace.alpha[name] = alpha[index].detach()
            trace.beta[name] = keep.detach().mean()
        return new, trace


@register_rule(
    "alfa_random", label="ALFA from random init", options=ALFAOptions,
    capabilities=Capabilities(meta_learned=True, reads_head_weights=True, reinitialises_backbone=True),
    colour="#1f77b4", order=40,
)
class ALFARandomRule(ALFARule):
    """ALFA's random-initialisation experiment: the backbone stays at its random init, the per-element decay
    ``B`` is meta-learned with the generator and the post-multipliers."""

    random_init = True
