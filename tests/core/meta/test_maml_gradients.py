"""Meta-gradients against central finite differences (float64) and the first-order identity."""

from __future__ import annotations

import copy

import pytest
import torch

from core.data.task import Task
from core.learner import Learner
from core.meta.estimator import LAST_STEP, QueryObjective, build_estimator
from core.meta.inner import forward, inner_loop, prepare_head, task_loss
from tests.tolerances import central_difference_error, float64_error_from_float32, gamma, unit_roundoff

TINY_CONV = {"name": "conv4", "in_channels": 1, "image_size": 8, "filters": 3, "n_blocks": 2, "n_classes": 3}


def _tiny_task(seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    support_x = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    query_x = torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    return Task(support_x, labels, query_x, labels.clone(), class_names=["a", "b", "c"])


def _learner(rule: dict, head_init: str = "learned") -> Learner:
    learner = Learner(TINY_CONV, rule, head_init=head_init, seed=3).double()
    if rule["name"].startswith("alfa"):
        # Make the generated rates clearly non-trivial so every path of eq. (7) matters.
        with torch.no_grad():
            learner.rule.alpha0.mul_(20.0)
            learner.rule.beta0.mul_(1000.0 if rule["name"] == "alfa" else 1.0)
    return learner


def _estimate(learner: Learner, tasks: list[Task], second_order: bool = True, execution: str = "loop",
              objective: QueryObjective = LAST_STEP) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The registered MAML estimators' gradient and ``{"loss", "accuracy"}`` (inner_steps 3)."""
    name = "maml" if second_order else "fomaml"
    estimate = build_estimator(name, learner, 3, execution=execution).meta_grad(tasks, objective)
    return estimate.grads, estimate.summary()


def _trainable(learner: Learner) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in learner.named_parameters() if p.requires_grad}


def _query_loss(learner: Learner, task: Task, steps: int = 3) -> torch.Tensor:
    """The second-order query loss the meta-gradient is of: prepare the head, adapt, score the queries."""
    params = prepare_head(learner, learner.initial_params(), task.support_x, task.support_y, task.n_classes,
                          learner.head_init)
    adapted = inner_loop(learner, params, task.support_x, task.support_y, steps, create_graph=True).params
    return task_loss(learner, forward(learner, adapted, task.query_x), task.query_y)


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


def _in_float32(tasks: list[Task]) -> list[Task]:
    return [Task(t.support_x.float(), t.support_y, t.query_x.float(), t.query_y, class_names=t.class_names) for t in tasks]


def _float64_error(result: dict[str, torch.Tensor], twin32: dict[str, torch.Tensor]) -> float:
    """How far a float64 meta-gradient may be from the exact one, sized by its float32 twin (tests/tolerances.py)."""
    twin_error = max(float((twin32[n].double() - result[n]).abs().max()) for n in result)
    largest = max(float(g.abs().max()) for g in result.values())
    return float64_error_from_float32(twin_error, largest)


def _loss_error(loss: float, twin32_loss: float) -> float:
    return float64_error_from_float32(abs(twin32_loss - loss), abs(loss))


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


def _loss_at(learner: Learner, tasks: list[Task], params: list[torch.nn.Parameter], vector: torch.Tensor, frozen=None) -> float:
    if frozen is not None:
        frozen.mode, frozen.position = "replay", 0
    with torch.no_grad():
        backup = [p.clone() for p in params]
        offset = 0
        for p in params:
            p.add_(vector[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
    losses = [_query_loss(learner, t).detach() for t in tasks]
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
    learner32 = copy.deepcopy(learner).float()  # copied before the gradient means are frozen: a plain twin
    tasks = [_tiny_task(0), _tiny_task(1)]
    loss32 = float(sum(_query_loss(learner32, t).detach() for t in _in_float32(tasks)) / len(tasks))
    frozen = _FrozenGradientState(learner.rule) if rule["name"].startswith("alfa") else None
    if frozen is not None:
        frozen.mode = "record"
    grads, _ = _estimate(learner, tasks)
    params = list(_trainable(learner).values())
    analytic = _flat(grads)
    point = torch.cat([p.detach().reshape(-1) for p in params])
    # Rounding of one float64 loss evaluation (the loss is ~1.5), sized by the float32 twin's error.
    loss_error = _loss_error(_loss_at(learner, tasks, params, torch.zeros_like(analytic), frozen), loss32)
    # Central differences in float64 trade truncation h^2 |f'''| / 6 against rounding loss_error / h.
    # |f'''| reaches ~2e3 along single meta-SGD rates (D(2h) - D(h) measures it), so the best step,
    # (3 loss_error / |f'''|)^(1/3), is ~1e-6: below the eps^(1/3) ~ 6e-6 that suits |f'''| ~ |f|.
    step = 1e-6

    def central_difference(direction: torch.Tensor, h: float) -> float:
        plus = _loss_at(learner, tasks, params, h * direction, frozen)
        minus = _loss_at(learner, tasks, params, -h * direction, frozen)
        return (plus - minus) / (2 * h)

    def assert_matches(direction: torch.Tensor) -> None:
        numeric = central_difference(direction, step)
        # x + h d is rounded to float64 in every moved coordinate, which moves the loss by at most
        # u64 * sum |x_i| |df/dx_i| over them (the analytic gradient only sizes this u64-small term).
        moved = direction != 0
        perturbation_error = unit_roundoff(torch.float64) * float((point.abs() * analytic.abs())[moved].sum())
        tolerance = central_difference_error(
            numeric, central_difference(direction, 2 * step), step, loss_error + perturbation_error
        )
        directional = float(analytic @ direction)
        assert abs(directional - numeric) <= tolerance, (directional, numeric, tolerance)

    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        direction = torch.randn(analytic.numel(), generator=g, dtype=torch.float64)
        assert_matches(direction / direction.norm())
    # Coordinate-wise check of the largest entries: the random directions could hide a wrong small block.
    for index in analytic.abs().topk(5).indices:
        unit = torch.zeros_like(analytic)
        unit[index] = 1.0
        assert_matches(unit)


def test_second_order_differs_from_first_order():
    learner = _learner({"name": "sgd", "lr": 0.3})
    tasks = [_tiny_task(0)]
    second, _ = _estimate(learner, tasks, second_order=True)
    first, _ = _estimate(learner, tasks, second_order=False)
    # The second-order terms move the largest entry by about its own size (0.69 against 0.58) while float64
    # rounding is ~1e-15 of it: rtol 1e-3 can only be met if those terms were dropped.
    assert not torch.allclose(_flat(second), _flat(first), rtol=1e-3)


def test_first_order_meta_gradient_is_query_gradient_at_adapted_weights():
    learner = _learner({"name": "sgd", "lr": 0.3})
    task = _tiny_task(2)
    grads, _ = _estimate(learner, [task], second_order=False)
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
    # Exact: the adapted weights come from the same operations in the same order, so do the query loss and
    # its gradient, and backpropagating through p - lr * g.detach() multiplies by exactly one.
    for got, want in zip(grads.values(), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


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
    # Both sides compute |q|^2 - |q - c|^2 = 2 q.c - |c|^2 in float64, in different orders: the head as a
    # (d+1)-term dot product plus |c|^2 from a d-term sum, cdist as a d-term sum of squared differences,
    # each prototype as its own 2-term mean. Each piece is a sum over at most d + 4 roundings of terms no
    # larger than (|q| + |c|)^2, and all pieces together stay under 4d + 16 of them (d = 12 features).
    d = feats_q.shape[1]
    scale = (float(feats_q.norm(dim=1).max()) + float(prototypes.norm(dim=1).max())) ** 2
    torch.testing.assert_close(logits, -distances + (feats_q**2).sum(1, keepdim=True),
                               rtol=0, atol=gamma(4 * d + 16, torch.float64) * scale)


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
    learner = _learner(rule, head_init)
    learner32 = copy.deepcopy(learner).float()
    tasks = [_tiny_task(s) for s in range(3)]
    loop, loop_diag = _estimate(learner, tasks, second_order)
    batched, batched_diag = _estimate(learner, tasks, second_order, "vmap")
    loop32, loop32_diag = _estimate(learner32, _in_float32(tasks), second_order)
    batched32, batched32_diag = _estimate(learner32, _in_float32(tasks), second_order, "vmap")
    assert loop.keys() == batched.keys()
    # The loop and vmap run different kernels, so even in float64 they agree only up to rounding: each is
    # off the exact gradient by at most its float32-sized bound (tests/tolerances.py); the two errors add.
    tolerance = _float64_error(loop, loop32) + _float64_error(batched, batched32)
    for name in loop:
        assert float((batched[name] - loop[name]).abs().max()) <= tolerance, name
    loss_tolerance = _loss_error(loop_diag["loss"], loop32_diag["loss"])
    loss_tolerance += _loss_error(batched_diag["loss"], batched32_diag["loss"])
    assert abs(batched_diag["loss"] - loop_diag["loss"]) <= loss_tolerance
    # Both average the same per-task float32 accuracies (k/6, at most 1), vmap as a float32 mean of the
    # three and the loop in Python floats: at most gamma_3 of float32 (plus float64's) apart.
    accuracy_tolerance = gamma(3, torch.float32) + gamma(3, torch.float64)
    assert abs(batched_diag["accuracy"] - loop_diag["accuracy"]) <= accuracy_tolerance


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
    learner = _learner(rule, head_init)
    learner32 = copy.deepcopy(learner).float()
    tasks = [_tiny_task(s) for s in range(2)]
    tasks32 = _in_float32(tasks)
    objective32 = QueryObjective.multi_step(3, 0.3) if multi_step else LAST_STEP
    objective = QueryObjective(objective32.step_weights.double()) if multi_step else LAST_STEP
    kept, kept_diag = _estimate(learner, tasks, second_order, objective=objective)
    redone, redone_diag = _estimate(learner, tasks, second_order, "recompute", objective)
    kept32, kept32_diag = _estimate(learner32, tasks32, second_order, objective=objective32)
    redone32, redone32_diag = _estimate(learner32, tasks32, second_order, "recompute", objective32)
    assert kept.keys() == redone.keys()
    assert _flat(kept).abs().max() > 0
    # Recomputing replays the forward operations but accumulates the meta-gradient in another order (here
    # bitwise equal without step weights, ~1e-17 apart with them): each float64 result is off the exact one
    # by at most its float32-sized bound (tests/tolerances.py), and the two errors add.
    tolerance = _float64_error(kept, kept32) + _float64_error(redone, redone32)
    for name in kept:
        assert float((redone[name] - kept[name]).abs().max()) <= tolerance, name
    loss_tolerance = _loss_error(kept_diag["loss"], kept32_diag["loss"])
    loss_tolerance += _loss_error(redone_diag["loss"], redone32_diag["loss"])
    assert abs(redone_diag["loss"] - kept_diag["loss"]) <= loss_tolerance
    # The same per-task float32 accuracies (the predictions agree), averaged in the same order: exact.
    assert redone_diag["accuracy"] == kept_diag["accuracy"]
