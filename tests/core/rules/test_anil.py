"""ANIL (Raghu et al. 2020): only the head adapts in the inner loop, the outer loop meta-trains everything."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.adapt import adapt
from core.cli import main
from core.data.task import Task
from core.learner import Learner
from core.meta.inner import forward, inner_loop, prepare_head, task_loss
from core.rules.anil import ANILRule
from models.backbones import head_names
from tests.app.builders import save_tiny_checkpoint

BACKBONE = {"name": "conv4", "in_channels": 1, "image_size": 8, "filters": 3, "n_blocks": 2, "n_classes": 3}
LR = 0.3


def _task(seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    centres = torch.randn(3, 1, 8, 8, generator=g)
    support = (centres[labels] + 0.5 * torch.randn(6, 1, 8, 8, generator=g)).to(dtype)
    query = (centres[labels] + 0.5 * torch.randn(6, 1, 8, 8, generator=g)).to(dtype)
    return support, labels, query, labels.clone()


def _anil(dtype=torch.float32, head_init="learned") -> Learner:
    return Learner(BACKBONE, {"name": "anil", "lr": LR}, head_init=head_init, seed=0).to(dtype)


def test_only_the_head_is_adapted_and_it_takes_exactly_a_gradient_step():
    learner = _anil(torch.float64, head_init="zero")
    head = head_names(learner.backbone)
    assert isinstance(learner.rule, ANILRule) and learner.inner_names == [head.weight, head.bias]
    support, labels, _, _ = _task(dtype=torch.float64)
    initial = {n: p.detach() for n, p in learner.initial_params().items()}
    start = prepare_head(learner, initial, support, labels, 3, "zero")
    result = inner_loop(learner, start, support, labels, 1, create_graph=False, differentiable=False)
    # Every feature tensor comes out as it went in, bit for bit.
    for name, tensor in initial.items():
        if name not in (head.weight, head.bias):
            assert torch.equal(result.params[name], tensor), name
    # The head moves by exactly -lr * grad: the same operation on the same operands as the rule.
    fast = {n: p.clone().requires_grad_(n in learner.inner_names) for n, p in start.items()}
    loss = task_loss(learner, forward(learner, fast, support), labels)
    grad_w, grad_b = torch.autograd.grad(loss, [fast[head.weight], fast[head.bias]])
    assert torch.equal(result.params[head.weight], start[head.weight] - LR * grad_w)
    assert torch.equal(result.params[head.bias], start[head.bias] - LR * grad_b)
    # Closed form from a zero head: every class has probability 1/N, so the cross-entropy gradient is
    # (1/N - onehot)^T features / M for the weight and the mean of (1/N - onehot) for the bias.
    with torch.no_grad():
        features = forward(learner, initial, support, features_only=True)
        residual = 1.0 / 3 - F.one_hot(labels, 3).double()
        expected_w = -LR * residual.t() @ features / len(labels)
        expected_b = -LR * residual.mean(dim=0)
    torch.testing.assert_close(result.params[head.weight], expected_w, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(result.params[head.bias], expected_b, rtol=1e-12, atol=1e-15)


def test_adapt_reports_head_traces_and_a_prototype_head_for_other_class_counts():
    learner = _anil().eval()
    support, labels, query, query_labels = _task()
    episode = Task(support, labels, query, query_labels, ["a", "b", "c"])
    result = adapt(learner, episode, steps=3, head_init="zero")
    head = head_names(learner.backbone)
    assert result.rule == "anil" and all(set(trace) == {head.weight, head.bias} for trace in result.traces)
    assert all(trace[head.weight]["alpha"] == pytest.approx(LR) for trace in result.traces)
    assert result.support_loss[-1] < result.support_loss[0]
    two_way = Task(support[:4], labels[:4], query[:4], query_labels[:4], ["a", "b"])
    assert adapt(learner, two_way, steps=1).head_init == "prototype"  # ANIL does not read the head's values


def _bilevel(learner: Learner, task, steps: int, create_graph: bool, differentiable: bool = True) -> torch.Tensor:
    """The query loss after ``steps`` ANIL steps on the support set, as a function of the learner's weights."""
    support, labels, query, query_labels = task
    params = learner.initial_params()
    result = inner_loop(learner, params, support, labels, steps, create_graph=create_graph, differentiable=differentiable)
    return task_loss(learner, forward(learner, result.params, query), query_labels)


def test_the_second_order_meta_gradient_reaches_the_features_through_the_heads_inner_gradient():
    learner = _anil(torch.float64)
    task = _task(1, torch.float64)
    params = dict(learner.backbone.named_parameters())
    names = list(params)
    second = dict(zip(names, torch.autograd.grad(_bilevel(learner, task, 2, True), list(params.values()))))
    first = dict(zip(names, torch.autograd.grad(_bilevel(learner, task, 2, False), list(params.values()))))
    head = head_names(learner.backbone)
    features = [n for n in names if n not in (head.weight, head.bias)]
    # (A conv bias right before batch norm is cancelled by the normalisation: its gradient is rounding noise.)
    assert all(float(second[n].abs().max()) > 1e-2 for n in features if n.endswith("weight"))
    # The head's inner gradient is a function of the features: at second order that dependence adds to the
    # features' meta-gradient; first order drops it.
    assert any(float((second[n] - first[n]).abs().max()) > 1e-8 for n in features)
    # And the second-order gradient is the derivative of the bilevel objective: central differences in float64.
    g = torch.Generator().manual_seed(5)
    direction = {n: torch.randn(p.shape, generator=g, dtype=torch.float64) for n, p in params.items()}
    analytic = sum(float((second[n] * direction[n]).sum()) for n in names)
    eps = 1e-6
    values = []
    original = {n: p.detach().clone() for n, p in params.items()}
    for sign in (1, -1):
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(original[n] + sign * eps * direction[n])
        values.append(float(_bilevel(learner, task, 2, False, differentiable=False)))
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(original[n])
    numeric = (values[0] - values[1]) / (2 * eps)
    assert numeric == pytest.approx(analytic, rel=1e-6)


def test_meta_training_with_anil_lowers_the_query_loss_and_moves_the_features():
    torch.manual_seed(0)
    learner = _anil()
    task = _task(2)
    features_before = {n: p.detach().clone() for n, p in learner.backbone.features.named_parameters()}
    optimizer = torch.optim.Adam(learner.parameters(), lr=0.01)
    losses = []
    for _ in range(15):
        loss = _bilevel(learner, task, 2, True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
    assert any(not torch.equal(p, features_before[n]) for n, p in learner.backbone.features.named_parameters())


def _episode_folder(root, n_classes=3, shots=2):
    g = torch.Generator().manual_seed(3)
    for role, count in (("support", shots), ("query", 1)):
        for c in range(n_classes):
            folder = root / role / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = (torch.rand(28, 28, generator=g) * 255).to(torch.uint8).numpy()
                Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    return root


def test_the_cli_adapts_a_maml_checkpoint_with_anil_and_refuses_rules_it_cannot_run(tmp_path, capsys):
    checkpoint = save_tiny_checkpoint(tmp_path / "maml.safetensors", rule={"name": "sgd", "lr": 0.4}, name="tiny-maml")
    episode = _episode_folder(tmp_path / "episode")
    code = main(["adapt", "--checkpoint", str(checkpoint), "--episode", str(episode), "--rule", "anil", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rule"] == "anil" and result["head_init"] == "prototype" and len(result["queries"]) == 3
    assert all(set(trace) == {"head.weight", "head.bias"} for trace in result["traces"])
    # A rule with meta-learned parameters needs a checkpoint trained with it; an unknown one is not a choice.
    assert main(["adapt", "--checkpoint", str(checkpoint), "--episode", str(episode), "--rule", "alfa"]) == 2
    assert "supports sgd, anil, not 'alfa'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["adapt", "--checkpoint", str(checkpoint), "--episode", str(episode), "--rule", "adam"])
    assert "invalid choice: 'adam'" in capsys.readouterr().err
