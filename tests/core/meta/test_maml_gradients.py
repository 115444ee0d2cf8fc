"""Meta-gradients against central finite differences (float64) and the first-order identity."""

from __future__ import annotations

import pytest
import torch

from core.learner import Learner
from core.meta.inner import forward, inner_loop, prepare_head, task_loss
from core.meta.maml import MAMLGradient, Task

TINY_CONV = {"name": "conv4", "in_channels": 1, "image_size": 8, "filters": 3, "n_blocks": 2, "n_classes": 3}


def _tiny_task(seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    support_x = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    query_x = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    return Task(support_x, labels, query_x, labels.clone(), n_classes=3)


def _learner(rule: dict, head_init: str = "learned") -> Learner:
    learner = Learner(TINY_CONV, rule, head_init=head_init, seed=3).double()
    if rule["name"].startswith("alfa"):
        # Make the generated rates clearly non-trivial so every path of eq. (7) matters.
        with torch.no_grad():
            learner.rule.alpha0.mul_(20.0)
            learner.rule.beta0.mul_(1000.0 if rule["name"] == "alfa" else 1.0)
    return learner


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


class _FrozenGradientState:
    """ALFA detaches the gradient means it feeds the generator: the meta-gradient treats them as constants.

    Finite differences of that function must hold them at their values at the unperturbed point, so this
    records them once (``record``) and replays them in every perturbed evaluation (``replay``).
    """

    def __init__(self, rule) -> None:
        self.rule, self.original, self.values, self.position, self.mode = rule, rule.generator_input, [], 0, "off"
        rule.generator_input = self

    def __call__(self, params, grads):
        state = self.original(params, grads)
        n = len(self.rule.layer_names)
        if self.mode == "record":
            self.values.append(state[n:].detach().clone())
        elif self.mode == "replay":
            state = torch.cat([state[:n], self.values[self.position]])
            self.position += 1
        return state


def _loss_at(estimator: MAMLGradient, tasks: list[Task], params: list[torch.nn.Parameter], vector: torch.Tensor, frozen=None) -> float:
    if frozen is not None:
        frozen.mode, frozen.position = "replay", 0
    with torch.no_grad():
        backup = [p.clone() for p in params]
        offset = 0
        for p in params:
            p.add_(vector[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
    losses = [estimator.task_query_loss(t)[0].detach() for t in tasks]
    with torch.no_grad():
        for p, b in zip(params, backup):
            p.copy_(b)
    return float(sum(losses) / len(losses))


@pytest.mark.parametrize(
    "rule,head_init",
    [
        ({"name": "sgd", "lr": 0.3}, "learned"),
        ({"name": "alfa", "steps": 3, "lr": 0.01}, "learned"),
        ({"name": "alfa_random", "steps": 3, "lr": 0.01}, "zero"),
        ({"name": "meta_sgd", "lr": 0.2}, "prototype"),
        ({"name": "per_step", "steps": 3, "lr": 0.2}, "learned"),
    ],
)
def test_second_order_meta_gradient_matches_finite_differences(rule, head_init):
    learner = _learner(rule, head_init)
    estimator = MAMLGradient(learner, inner_steps=3, second_order=True)
    tasks = [_tiny_task(0), _tiny_task(1)]
    frozen = _FrozenGradientState(learner.rule) if rule["name"].startswith("alfa") else None
    if frozen is not None:
        frozen.mode = "record"
    grads, _ = estimator.meta_grad(tasks)
    params = list(estimator.trainable().values())
    analytic = _flat(grads)
    eps = 1e-6
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        direction = torch.randn(analytic.numel(), generator=g, dtype=torch.float64)
        direction /= direction.norm()
        numeric = (_loss_at(estimator, tasks, params, eps * direction, frozen) - _loss_at(estimator, tasks, params, -eps * direction, frozen)) / (2 * eps)
        directional = float(analytic @ direction)
        assert abs(directional - numeric) <= 1e-4 * max(abs(numeric), 1e-3), (directional, numeric)
    # Coordinate-wise check of the largest entries: the random directions could hide a wrong small block.
    for index in analytic.abs().topk(5).indices:
        unit = torch.zeros_like(analytic)
        unit[index] = 1.0
        numeric = (_loss_at(estimator, tasks, params, eps * unit, frozen) - _loss_at(estimator, tasks, params, -eps * unit, frozen)) / (2 * eps)
        assert abs(float(analytic[index]) - numeric) <= 1e-4 * abs(numeric) + 1e-9


def test_second_order_differs_from_first_order():
    learner = _learner({"name": "sgd", "lr": 0.3})
    tasks = [_tiny_task(0)]
    second, _ = MAMLGradient(learner, 3, second_order=True).meta_grad(tasks)
    first, _ = MAMLGradient(learner, 3, second_order=False).meta_grad(tasks)
    assert not torch.allclose(_flat(second), _flat(first), rtol=1e-3)


def test_first_order_meta_gradient_is_query_gradient_at_adapted_weights():
    learner = _learner({"name": "sgd", "lr": 0.3})
    task = _tiny_task(2)
    grads, _ = MAMLGradient(learner, inner_steps=3, second_order=False).meta_grad([task])
    adapted = inner_loop(
        learner, learner.initial_params(), task.support_x, task.support_y, 3, create_graph=False, differentiable=False
    ).params
    adapted = {n: p.detach().requires_grad_() for n, p in adapted.items()}
    query_loss = task_loss(learner, forward(learner, adapted, task.query_x), task.query_y)
    backbone_names = [n.removeprefix("backbone.") for n in grads]
    expected = torch.autograd.grad(query_loss, [adapted[n] for n in backbone_names])
    # Holds for adapted tensors (identity Jacobian of SGD when inner gradients are constants) and for the
    # batch-norm affine parameters, which the inner loop leaves alone.
    assert set(learner.inner_names) < set(backbone_names)
    for got, want in zip(grads.values(), expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_prototype_head_initial_logits_rank_by_distance():
    learner = _learner({"name": "sgd", "lr": 0.1}, head_init="prototype")
    task = _tiny_task(4)
    params = prepare_head(learner, learner.initial_params(), task.support_x, task.support_y, 3, "prototype")
    with torch.no_grad():
        logits = forward(learner, params, task.query_x)
        feats_q = forward(learner, params, task.query_x, features_only=True)
        feats_s = forward(learner, params, task.support_x, features_only=True)
    prototypes = torch.stack([feats_s[task.support_y == k].mean(0) for k in range(3)])
    distances = torch.cdist(feats_q, prototypes) ** 2
    torch.testing.assert_close(logits, -distances + (feats_q**2).sum(1, keepdim=True))


@pytest.mark.parametrize("second_order", [True, False])
@pytest.mark.parametrize(
    "rule,head_init",
    [
        ({"name": "sgd", "lr": 0.3}, "learned"),
        # A trainable backbone under a prototype head: the inner gradient must be the partial derivative per
        # tensor (vmap's torch.func.grad), not one that adds the head's dependence on the backbone.
        ({"name": "sgd", "lr": 0.3}, "prototype"),
        ({"name": "alfa", "steps": 3}, "zero"),
        ({"name": "alfa_random", "steps": 3}, "prototype"),
    ],
)
def test_batched_meta_gradient_equals_per_task_loop(rule, head_init, second_order):
    from core.meta.batched import BatchedMAMLGradient

    learner = _learner(rule, head_init)
    tasks = [_tiny_task(s) for s in range(3)]
    loop, loop_diag = MAMLGradient(learner, 3, second_order=second_order).meta_grad(tasks)
    batched, batched_diag = BatchedMAMLGradient(learner, 3, second_order=second_order).meta_grad(tasks)
    assert loop.keys() == batched.keys()
    for name in loop:
        torch.testing.assert_close(batched[name], loop[name], rtol=1e-9, atol=1e-11, msg=name)
    assert batched_diag["loss"] == pytest.approx(loop_diag["loss"], rel=1e-9)
    assert batched_diag["accuracy"] == pytest.approx(loop_diag["accuracy"])


@pytest.mark.parametrize("second_order", [True, False])
@pytest.mark.parametrize("multi_step", [False, True])
@pytest.mark.parametrize(
    "rule,head_init",
    [
        ({"name": "sgd", "lr": 0.3}, "learned"),
        ({"name": "meta_sgd", "lr": 0.2}, "prototype"),
        ({"name": "per_step", "steps": 3}, "zero"),
        ({"name": "alfa", "steps": 3}, "learned"),
        ({"name": "alfa_random", "steps": 3}, "zero"),
    ],
)
def test_recomputed_inner_loop_gives_the_same_meta_gradient(rule, head_init, second_order, multi_step):
    from core.meta.maml import multi_step_weights
    from core.meta.recompute import RecomputingMAMLGradient

    learner = _learner(rule, head_init)
    tasks = [_tiny_task(s) for s in range(2)]
    weights = multi_step_weights(3, 0.3).double() if multi_step else None
    kept, kept_diag = MAMLGradient(learner, 3, second_order=second_order).meta_grad(tasks, step_weights=weights)
    redone, redone_diag = RecomputingMAMLGradient(learner, 3, second_order=second_order).meta_grad(tasks, step_weights=weights)
    assert kept.keys() == redone.keys()
    assert _flat(kept).abs().max() > 0
    for name in kept:
        torch.testing.assert_close(redone[name], kept[name], rtol=1e-9, atol=1e-11, msg=name)
    assert redone_diag["loss"] == pytest.approx(kept_diag["loss"], rel=1e-12)
    assert redone_diag["accuracy"] == pytest.approx(kept_diag["accuracy"])
