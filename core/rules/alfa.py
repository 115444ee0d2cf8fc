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

``learning_state="normalised"`` (an option, not the paper's) replaces the gradient means of tau by two
scale-free statistics per layer, ``mean(grad) / rms(grad)`` and ``log10(rms(grad) + 1e-8)`` (3N inputs).
Why: with the paper's tau the generated values are the same for every episode
(``bench/alfa_learning_state.py``). A layer's gradient elements nearly cancel, so their mean is 1-3 % of their
RMS and about 1e-7 in absolute value; the weight means barely move in 5 steps; and with a zero head the
backbone's gradients are exactly zero at step 0 while the head's gradient mean is zero at every step (softmax
cross-entropy gradients sum to zero over the classes). The RMS, by contrast, varies by 5-90 % between episodes.

``freeze_learning_state(states)`` makes the generator read a fixed tau per step instead of the task's (the
frozen-schedule ablation of ALFA Table 6, ``core.schedule_ablation``).

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
LEARNING_STATES = ("means", "normalised")
# Floor of the gradient RMS under the logarithm: a layer with no gradient (the backbone behind a zero head at
# step 0) reads log10(1e-8) = -8, below any real float32 gradient RMS seen here (>= 1e-6), with no infinity.
RMS_FLOOR = 1e-8


@dataclass(frozen=True)
class ALFAOptions:
    steps: int = 5  # the number of post-multiplier rows; a training config defaults it to meta.inner_steps
    lr: float = 0.01  # alpha0's initial value
    weight_decay: float = 5e-4  # beta0 starts at weight_decay * lr (alfa_random: B does)
    generator_init: str = "default"  # "default": PyTorch's init, as the authors' code; or "identity"
    learning_state: str = "means"  # "means": the paper's tau; "normalised": see the module docstring

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        if self.generator_init not in GENERATOR_INITS:
            raise ValueError(f"generator_init must be 'default' or 'identity', not {self.generator_init!r}")
        if self.learning_state not in LEARNING_STATES:
            raise ValueError(f"learning_state must be 'means' or 'normalised', not {self.learning_state!r}")


@register_rule(
    "alfa", label="ALFA", options=ALFAOptions,
    capabilities=Capabilities(meta_learned=True, reads_head_weights=True, task_conditioned=True), colour="#d62728", order=30,
)
class ALFARule(InnerRule):
    options: ALFAOptions
    random_init = False

    def __init__(self, layer_names: list[str], shapes: dict[str, torch.Size], options: ALFAOptions) -> None:
        super().__init__(layer_names, shapes, options)
        self.steps = int(options.steps)
        lr, weight_decay = float(options.lr), float(options.weight_decay)
        n_layers = len(self.layer_names)
        width = self.state_size
        self.generator = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2 * n_layers))
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

        # A fixed tau per step replacing the task's (freeze_learning_state); not a parameter, never saved.
        self.frozen_learning_state: torch.Tensor | None = None

    @property
    def state_size(self) -> int:
        """The generator's input size: 2N for the paper's tau, 3N for the normalised one."""
        return (2 if self.options.learning_state == "means" else 3) * len(self.layer_names)

    def generator_input(self, params: Params, grads: Params) -> torch.Tensor:
        """The task learning state tau_bar: N weight means (differentiable), then N gradient means (detached);
        normalised: N weight means, N ``mean(grad) / rms(grad)``, N ``log10(rms(grad) + RMS_FLOOR)``."""
        weight_means = torch.stack([params[n].mean() for n in self.layer_names])
        grad_means = torch.stack([grads[n].detach().mean() for n in self.layer_names])
        if self.options.learning_state == "means":
            return torch.cat([weight_means, grad_means])
        rms = torch.stack([grads[n].detach().pow(2).mean().sqrt() for n in self.layer_names])
        # mean / rms lies in [-1, 1]; a zero gradient (rms 0, mean 0) reads 0.
        agreement = grad_means / rms.clamp_min(torch.finfo(rms.dtype).tiny)
        return torch.cat([weight_means, agreement, torch.log10(rms + RMS_FLOOR)])

    def freeze_learning_state(self, states: torch.Tensor | None) -> None:
        """Generate from ``states[j]`` at step ``j`` (``steps x state_size``; the last row for later steps) for
        every task, instead of from the task's learning state; ``None`` restores the real generator."""
        if states is not None and (states.ndim != 2 or states.shape[1] != self.state_size or len(states) == 0):
            raise ValueError(
                f"a frozen learning state must be (steps, {self.state_size}), not {tuple(states.shape)}"
            )
        self.frozen_learning_state = None if states is None else states.detach()

    def generate(
        self, params: Params, grads: Params, step_index: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(alpha~, beta~, tau): one alpha~ and one beta~ per updated tensor (the generator's first N outputs,
        then the last N), and the learning state they were generated from."""
        if self.frozen_learning_state is not None:
            frozen = self.frozen_learning_state
            state = frozen[min(step_index, len(frozen) - 1)].to(device=self.alpha0.device, dtype=self.alpha0.dtype)
        else:
            state = self.generator_input(params, grads)
        out = self.generator(state)
        n_layers = len(self.layer_names)
        return out[:n_layers], out[n_layers:], state

    def _decay_for(self, name: str, like: torch.Tensor) -> torch.Tensor:
        decay = self.decay[param_key(name)]
        if decay.shape == like.shape:
            return decay
        # Head of an episode with another class count: the per-class rows are exchangeable, so use their mean.
        return decay.mean(dim=0, keepdim=True).expand_as(like)

    def step(self, params: Params, grads: Params, step_index: int, state: dict[str, Any]):
        j = min(step_index, self.steps - 1)
        alpha_tilde, beta_tilde, learning_state = self.generate(params, grads, step_index)
        alpha = alpha_tilde * self.alpha0[j]
        beta_scale = beta_tilde * self.beta0[j]
        trace = StepTrace(learning_state=learning_state.detach())
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
    capabilities=Capabilities(
        meta_learned=True, reads_head_weights=True, reinitialises_backbone=True, task_conditioned=True
    ),
    colour="#1f77b4", order=40,
)
class ALFARandomRule(ALFARule):
    """ALFA's random-initialisation experiment: the backbone stays at its random init, the per-element decay
    ``B`` is meta-learned with the generator and the post-multipliers."""

    random_init = True
