"""The outer steps (core/meta/outer_step.py): each does what its formula says, the config names them with clear
errors, training uses them, records them and resumes them exactly, and the default is Adam, bit for bit as before.

Float tolerances are rounding-error bounds (tests/tolerances.py's ``gamma``): a chain of ``k`` rounded operations is
off by at most ``gamma(k)`` times the magnitudes it combines. A norm here is ``torch.nn.utils.get_total_norm``: each
tensor's norm (``n`` squares summed, a square root: a chain of ``n + 1``), then the norm of those norms (a square
and a root, 2 more for a single tensor).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.checkpoint import read_metadata
from core.checkpoint.format import read_header, read_tensors, write_file
from core.config import ADDED_META_KEYS, ConfigError, MetaConfig, TrainConfig, config_from_dict, load_config
from core.meta.estimator import LAST_STEP
from core.meta.outer_step import (
    OUTER_STEPS,
    SNGDM,
    ClippedOptions,
    NormalizedGD,
    OuterStepChoice,
    SGDOptions,
    choose_outer_step,
)
from tests.tolerances import gamma, unit_roundoff

F64 = torch.float64
U = unit_roundoff(F64)


def _norm(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t))


def _step(choice: OuterStepChoice, x: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    """``x`` after one step of ``choice`` with the gradient ``grad``; ``x`` itself is not changed."""
    x = x.clone()
    outer = choice.build([x], lr=lr)
    x.grad = grad.clone()
    outer.step()
    return x


# ----- what each step does ---------------------------------------------------------------------------------------
def test_the_normalized_step_has_length_eta():
    rng = np.random.default_rng(10)
    n = 8
    for eta in (1e-3, 0.25, 3.0):
        x = torch.tensor(rng.standard_normal(n), dtype=F64)
        g = torch.tensor(10 ** rng.uniform(-5, 5) * rng.standard_normal(n), dtype=F64)
        step = _step(OuterStepChoice.parse("normalized"), x, g, eta) - x
        # eta (g / ||g||): the norm (n + 3, the module docstring), a division and a product: each entry of the step is
        # off by gamma(n + 5) of its size; measuring its norm here adds gamma(n + 1) eta; subtracting from x and back
        # rounds each entry by at most u (|x_i| + |step_i|) twice.
        tol = (gamma(n + 5, F64) + gamma(n + 1, F64)) * eta + 2 * U * (_norm(x) + eta)
        assert abs(_norm(step) - eta) <= tol
        assert torch.allclose(step / eta, -g / _norm(g), rtol=0, atol=tol / eta)
    zero = _step(OuterStepChoice.parse("normalized"), torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64), 0.5)
    assert torch.equal(zero, torch.ones(3, dtype=F64))  # zero gradient: no move


@pytest.mark.parametrize("name", ["normalized", "sngdm"])
def test_the_norm_is_over_every_group_together_and_each_group_moves_at_its_rate(name):
    """Training's two groups (backbone at outer_lr, rule at rule_outer_lr): one unit direction, two rates."""
    rng = np.random.default_rng(12)
    a, b = torch.tensor(rng.standard_normal(5), dtype=F64), torch.tensor(rng.standard_normal(3), dtype=F64)
    ga, gb = torch.tensor(rng.standard_normal(5), dtype=F64), torch.tensor(rng.standard_normal(3), dtype=F64)
    for rates in ((0.1, 0.1), (0.1, 0.01)):
        x, y = a.clone(), b.clone()
        outer = OuterStepChoice.parse(name).build([{"params": [x], "lr": rates[0]}, {"params": [y], "lr": rates[1]}],
                                                  lr=1.0)
        x.grad, y.grad = ga.clone(), gb.clone()
        outer.step()
        whole = _norm(torch.cat([ga, gb]))  # sngdm's first momentum is (1 - beta) g: the same direction
        # The step's entries: each tensor's norm (at most 5 squares summed and a root: 6 operations), the norm of the
        # two norms (3), the division and the product by the rate (2), and for sngdm (1 - beta) g + beta 0 (2): a
        # chain of at most 13; the reference here is a chain of 11 (a norm of 8 entries, a division, a product).
        # Subtracting from the start and back rounds each entry by at most u (|start_i| + rate) twice.
        for moved, start, g, rate in ((x, a, ga, rates[0]), (y, b, gb, rates[1])):
            tol = (gamma(13, F64) + gamma(11, F64)) * rate + 2 * U * (float(start.abs().max()) + rate)
            assert torch.allclose(moved - start, -rate * g / whole, rtol=0, atol=tol)
        step = _norm(torch.cat([x - a, y - b]))
        if rates[0] == rates[1]:  # exactly the rate, to rounding (measuring the norm: 9 operations)
            tol = (gamma(13, F64) + gamma(9, F64)) * rates[0] + 2 * U * (_norm(torch.cat([a, b])) + rates[0])
            assert abs(step - rates[0]) <= tol
        else:
            assert min(rates) < step < max(rates)  # neither group's own norm: that would give each its full rate


def test_clipping_leaves_small_gradients_alone_and_caps_large_ones():
    rng = np.random.default_rng(11)
    n, threshold, lr = 8, 0.7, 0.1
    clipped = OuterStepChoice.parse("clipped", {"max_norm": threshold})
    small = torch.tensor(rng.standard_normal(n), dtype=F64)
    small *= 0.5 * threshold / _norm(small)
    x = torch.tensor(rng.standard_normal(n), dtype=F64)
    for g in (small, 40 * small):
        moved = x.clone()
        outer = clipped.build([moved], lr=lr)
        moved.grad = g.clone()
        diagnostics = outer.step()
        seen = moved.grad  # clip_grad_norm_ rescales .grad in place; SGD leaves it
        if g is small:
            assert torch.equal(seen, small)  # the very same numbers
        else:
            # torch's coefficient c / (||g|| + 1e-6) (the norm: n + 3 operations, then an addition and a division)
            # times g (1): each entry is off by gamma(n + 6) of its size; measuring the norm here adds gamma(n + 1).
            # The 1e-6 keeps the clipped norm short of c by c 1e-6 / (||g|| + 1e-6), far above that rounding.
            norm = _norm(g)
            expected = threshold * norm / (norm + 1e-6)
            assert abs(_norm(seen) - expected) <= (gamma(n + 6, F64) + gamma(n + 1, F64)) * threshold
            assert _norm(seen) < threshold - threshold * 0.5e-6 / norm
            # (the reference: a norm, an addition, a division and a product, n + 4 operations)
            atol = (gamma(n + 6, F64) + gamma(n + 4, F64)) * threshold
            assert torch.allclose(seen, g / (norm + 1e-6) * threshold, rtol=0, atol=atol)
        assert diagnostics["grad_norm"] == pytest.approx(_norm(g), rel=gamma(n + 3, F64) + gamma(n + 1, F64))
        # then the base step, torch's SGD, on the clipped gradient
        twin = x.clone()
        sgd = torch.optim.SGD([twin], lr=lr)
        twin.grad = seen.clone()
        sgd.step()
        assert torch.equal(moved, twin)


def test_sngdm_follows_the_momentum_recursion_by_hand():
    beta, eta = 0.5, 2.0
    x0 = torch.tensor([1.0, -1.0], dtype=F64)
    grads = [torch.tensor(g, dtype=F64) for g in ([3.0, 4.0], [-7.5, 6.0], [13.0, -28.0])]
    # m1 = 0.5 (0, 0) + 0.5 (3, 4)         = (1.5, 2),   ||m1|| = 2.5, x1 = x0 - 2 (0.6, 0.8)
    # m2 = 0.5 (1.5, 2) + 0.5 (-7.5, 6)    = (-3, 4),    ||m2|| = 5,   x2 = x1 - 2 (-0.6, 0.8)
    # m3 = 0.5 (-3, 4) + 0.5 (13, -28)     = (5, -12),   ||m3|| = 13,  x3 = x2 - 2 (5/13, -12/13)
    momenta = [torch.tensor(m, dtype=F64) for m in ([1.5, 2.0], [-3.0, 4.0], [5.0, -12.0])]
    by_hand = [x0 - 2 * torch.tensor([0.6, 0.8], dtype=F64)]
    by_hand.append(by_hand[-1] - 2 * torch.tensor([-0.6, 0.8], dtype=F64))
    by_hand.append(by_hand[-1] - 2 * torch.tensor([5 / 13, -12 / 13], dtype=F64))
    x = x0.clone()
    outer = OuterStepChoice.parse("sngdm", {"momentum": beta}).build([x], lr=eta)
    for g, m_expected, x_expected in zip(grads, momenta, by_hand, strict=True):
        x.grad = g.clone()
        outer.step()
        assert torch.equal(outer.optimizer.state[x]["momentum_buffer"], m_expected)  # halves of small integers: exact
        # m / ||m|| (a 2-term norm: 5 operations, the module docstring; a division) times eta: each entry is off by
        # at most gamma(7) eta + u 5 (|x| <= 5) per step, over at most 3 steps; the hand values (0.6, 5/13, ... are
        # not floats) are rounded as much
        assert torch.allclose(x, x_expected, rtol=0, atol=2 * 3 * (gamma(7, F64) * eta + 5 * U))


def test_sngdm_without_momentum_is_the_normalized_step():
    rng = np.random.default_rng(13)
    x = torch.tensor(rng.standard_normal(6), dtype=F64)
    a, b = x.clone(), x.clone()
    plain, sngdm = NormalizedGD([a], lr=0.3), SNGDM([b], lr=0.3, momentum=0.0)
    for _ in range(3):
        g = torch.tensor(rng.standard_normal(6), dtype=F64)
        a.grad, b.grad = g.clone(), g.clone()
        plain.step()
        sngdm.step()
        assert torch.equal(a, b)  # 0 m + 1 g is g exactly


@pytest.mark.parametrize("name,options,torch_class,torch_options", [
    ("sgd", {}, torch.optim.SGD, {}),
    ("sgd", {"momentum": 0.5}, torch.optim.SGD, {"momentum": 0.5}),
    ("adam", {}, torch.optim.Adam, {}),
    ("adam", {"betas": [0.8, 0.99], "eps": 1e-6}, torch.optim.Adam, {"betas": (0.8, 0.99), "eps": 1e-6}),
])
def test_sgd_and_adam_are_torchs(name, options, torch_class, torch_options):
    rng = np.random.default_rng(14)
    x = torch.tensor(rng.standard_normal(5), dtype=F64)
    ours, theirs = x.clone(), x.clone()
    outer = OuterStepChoice.parse(name, options).build([ours], lr=0.05)
    reference = torch_class([theirs], lr=0.05, **torch_options)
    assert isinstance(outer.optimizer, torch_class)
    for _ in range(3):
        g = torch.tensor(rng.standard_normal(5), dtype=F64)
        ours.grad, theirs.grad = g.clone(), g.clone()
        outer.step()
        reference.step()
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name,options", [
    ("adam", {}), ("sgd", {"momentum": 0.9}), ("clipped", {"max_norm": 0.5, "base": "adam"}), ("normalized", {}),
    ("sngdm", {"momentum": 0.9}),
])
def test_the_optimizer_state_round_trips_so_the_next_step_is_identical(name, options, tmp_path):
    """Through a state file, as training writes it (core.checkpoint.training_state), SNGDM's momentum included."""
    from core.checkpoint.training_state import optimizer_tensors, restore_optimizer

    rng = np.random.default_rng(15)
    choice = OuterStepChoice.parse(name, options)
    start = [torch.tensor(rng.standard_normal(s), dtype=F64) for s in (4, 3)]
    grads = [[torch.tensor(rng.standard_normal(s), dtype=F64) for s in (4, 3)] for _ in range(4)]

    def run(params, outer, steps):
        for gs in steps:
            for p, g in zip(params, gs, strict=True):
                p.grad = g.clone()
            outer.step()

    def groups(params):
        return [{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.02}]

    straight = [p.clone() for p in start]
    run(straight, choice.build(groups(straight), lr=0.1), grads)
    first = [p.clone() for p in start]
    outer = choice.build(groups(first), lr=0.1)
    run(first, outer, grads[:2])
    path = write_file(tmp_path / "state.safetensors", optimizer_tensors(outer.optimizer),
                      {"param_groups": outer.optimizer.state_dict()["param_groups"]})
    resumed = [p.clone() for p in first]
    fresh = choice.build(groups(resumed), lr=0.1)
    restore_optimizer(fresh.optimizer, read_tensors(path), read_header(path)["param_groups"])
    run(resumed, fresh, grads[2:])
    for ours, theirs in zip(resumed, straight, strict=True):
        assert torch.equal(ours, theirs)
    if name in ("sgd", "sngdm"):  # and the state mattered: without it the next steps differ
        forgetful = [p.clone() for p in first]
        run(forgetful, choice.build(groups(forgetful), lr=0.1), grads[2:])
        assert not all(torch.equal(a, b) for a, b in zip(forgetful, straight, strict=True))


# ----- the config ------------------------------------------------------------------------------------------------
def test_the_config_names_the_step_and_its_options(tmp_path):
    path = tmp_path / "sngdm.toml"
    path.write_text('[meta]\nouter_step = "sngdm"\nouter_step_options = { momentum = 0.5 }\n')
    config = load_config(path)
    choice = choose_outer_step(config.meta.outer_step, config.meta.outer_step_options, config.meta.grad_clip)
    assert choice == OuterStepChoice.parse("sngdm", {"momentum": 0.5})
    assert choice.settings() == {"momentum": 0.5} and choice.label == "sngdm (momentum=0.5)"
    assert config_from_dict(config.to_dict()) == config  # as a run's stored config reads back
    assert config.to_dict()["meta"]["outer_step_options"] == {"momentum": 0.5}
    clipped = OuterStepChoice.parse("clipped", {"max_norm": 2.0, "base": "adam", "eps": 1e-6})
    assert clipped.settings() == {"max_norm": 2.0, "base": "adam", "betas": [0.9, 0.999], "eps": 1e-6}
    assert clipped.label == "clipped (max_norm=2, base=adam, eps=1e-06)"
    assert OuterStepChoice.parse("sgd").label == "sgd"
    # Every existing config: Adam, and naming it changes nothing.
    assert config_from_dict({}).meta.outer_step == "adam"
    assert config_from_dict({"meta": {"outer_step": "adam", "outer_step_options": {}}}) == config_from_dict({})
    # The keys a stored config may lack mean the default, which is what runs did before they existed.
    defaults = MetaConfig()
    assert ADDED_META_KEYS == {k: getattr(defaults, k) for k in ADDED_META_KEYS}


def test_grad_clip_is_the_older_spelling_of_clipped_adam():
    assert choose_outer_step("adam", {}, 0.5) == OuterStepChoice("clipped", ClippedOptions(0.5, "adam"))
    assert choose_outer_step("sgd", {"momentum": 0.9}, 0.5) == OuterStepChoice(
        "clipped", ClippedOptions(0.5, "sgd", SGDOptions(0.9)))
    assert choose_outer_step("adam", {}, 0.0) == OuterStepChoice("adam")


@pytest.mark.parametrize("meta,message", [
    ({"outer_step": "sgdm"},
     "meta.outer_step: unknown outer step 'sgdm'; choose one of adam, clipped, normalized, sgd, sngdm"),
    ({"outer_step": ["adam"]}, r"unknown outer step \['adam'\]"),
    ({"outer_step": "sngdm", "outer_step_options": {"beta": 0.9}},
     r"unknown option\(s\) for outer step 'sngdm': beta \(known: momentum\)"),
    ({"outer_step": "normalized", "outer_step_options": {"lr": 0.1}},
     r"unknown option\(s\) for outer step 'normalized': lr \(known: none\)"),
    ({"outer_step": "sngdm", "outer_step_options": {"momentum": 1.0}},
     "outer step 'sngdm': momentum must be a number from 0 to below 1, not 1.0"),
    ({"outer_step": "sngdm", "outer_step_options": {"momentum": True}}, "momentum must be a number"),
    ({"outer_step": "sgd", "outer_step_options": {"momentum": "high"}},
     "outer step 'sgd': momentum must be a number from 0 to below 1, not 'high'"),
    ({"outer_step": "adam", "outer_step_options": {"betas": [0.9]}},
     r"outer step 'adam': betas must be two numbers \[beta1, beta2\], not \[0.9\]"),
    ({"outer_step": "adam", "outer_step_options": {"eps": 0}}, "outer step 'adam': eps must be a number above 0, not 0"),
    ({"outer_step": "clipped"}, "outer step 'clipped' needs max_norm, the clipping threshold"),
    ({"outer_step": "clipped", "outer_step_options": {"max_norm": -1}},
     "outer step 'clipped': max_norm must be a number above 0, not -1"),
    ({"outer_step": "clipped", "outer_step_options": {"max_norm": 1, "base": "sngdm"}},
     "outer step 'clipped': base must be one of sgd, adam, not 'sngdm'"),
    ({"outer_step": "clipped", "outer_step_options": {"max_norm": 1, "betas": [0.9, 0.99]}},
     r"unknown option\(s\) for outer step 'clipped' with base 'sgd': betas \(known: base, max_norm, momentum\)"),
    ({"outer_step_options": "fast"}, "meta.outer_step_options must be a table, not 'fast'"),
    ({"outer_step": "sngdm", "grad_clip": 1.0},
     "meta.grad_clip clips before an adam or sgd step; with outer step 'sngdm' set it to 0$"),
    ({"outer_step": "clipped", "outer_step_options": {"max_norm": 1}, "grad_clip": 1.0},
     "with outer step 'clipped' set it to 0 and give the threshold as outer_step_options.max_norm"),
])
def test_bad_outer_steps_are_config_errors_that_say_what_is_wrong(meta, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"meta": meta})


def test_every_step_is_registered_with_options_that_have_defaults():
    assert sorted(OUTER_STEPS) == ["adam", "clipped", "normalized", "sgd", "sngdm"]
    for name in OUTER_STEPS:
        if name != "clipped":
            OuterStepChoice(name).settings()  # builds from its defaults
    with pytest.raises(ValueError, match="needs max_norm"):
        OuterStepChoice("clipped")


# ----- training --------------------------------------------------------------------------------------------------
def _raw(tmp_path, meta: dict | None = None, rule: dict | None = None, iterations: int = 4) -> dict:
    """Sine regression with a small MLP: a meta-training run of a few seconds on one CPU core."""
    return {"output_dir": str(tmp_path / "run"), "seed": 0, "data": {"kind": "sine"},
            "task": {"k_shot": 5, "n_query": 10}, "model": {"backbone": {"name": "mlp", "hidden": [16, 16]}},
            "rule": rule or {"name": "sgd", "lr": 0.02},
            "meta": {"meta_batch": 4, "iterations": iterations, "inner_steps": 2, **(meta or {})},
            "validation": {"every": iterations, "episodes": 4}, "checkpoint": {"every": iterations}}


def _trainer(raw: dict):
    from core.train import Trainer

    return Trainer(config_from_dict(raw), device="cpu", progress=False)


# A rate for each step (a step length for normalized and sngdm).
TRAINING = [
    ("adam", {}, 1e-2),
    ("sgd", {}, 1e-2),
    ("clipped", {"max_norm": 1.0}, 0.05),
    ("normalized", {}, 0.05),
    ("sngdm", {"momentum": 0.9}, 0.05),
]


@pytest.mark.parametrize("name,options,lr", TRAINING, ids=[t[0] for t in TRAINING])
def test_training_with_each_step_lowers_the_loss_and_records_the_step(name, options, lr, tmp_path):
    raw = _raw(tmp_path, {"outer_step": name, "outer_step_options": options, "outer_lr": lr}, iterations=20)
    trainer = _trainer(raw)
    # The same meta-batch every iteration: the loss is then one deterministic function of the meta-parameters, which
    # every outer step must lower (on fresh tasks each time, 20 iterations of sine regression are mostly noise).
    batch = trainer.tasks(0)
    trainer.tasks = lambda iteration: batch
    before = trainer.estimator.meta_grad(batch, LAST_STEP).loss
    trainer.run()
    assert trainer.estimator.meta_grad(batch, LAST_STEP).loss < before
    stored = read_metadata(tmp_path / "run" / "last.safetensors").training
    assert stored.config["meta"]["outer_step"] == name and stored.config["meta"]["outer_step_options"] == options
    again = stored.train_config().meta
    assert choose_outer_step(again.outer_step, again.outer_step_options) == OuterStepChoice.parse(name, options)


def _old_step(trainer, optimizer, iteration: int) -> dict[str, float]:
    """``Trainer.step`` as it was before ``meta.outer_step`` (multi-step loss aside): clip, then Adam."""
    meta = trainer.config.meta
    estimate = trainer.estimator.meta_grad(trainer.tasks(iteration), LAST_STEP)
    diagnostics = estimate.summary(trainer.objective.metric_name)
    for name, param in trainer.trainable.items():
        param.grad = estimate.grads[name]
    if meta.grad_clip > 0:
        diagnostics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(trainer.trainable.values(), meta.grad_clip))
    for group, scale in zip(optimizer.param_groups, trainer.group_scales, strict=True):
        group["lr"] = trainer.outer_lr(iteration) * scale
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return diagnostics


@pytest.mark.parametrize("meta,rule", [
    ({}, None),
    # two groups (ALFA's generator at its own rate), the cosine schedule, and the older grad_clip
    ({"grad_clip": 0.5, "rule_outer_lr": 3e-3, "cosine_schedule": True, "iterations": 10},
     {"name": "alfa", "lr": 0.02}),
], ids=["default", "alfa-grad_clip"])
def test_the_default_adam_is_bit_identical_to_before(meta, rule, tmp_path):
    new = _trainer(_raw(tmp_path, meta, rule))
    old = _trainer(_raw(tmp_path, meta, rule))
    assert isinstance(new.optimizer, torch.optim.Adam)
    groups = [{"params": [p for n, p in old.trainable.items() if not n.startswith("rule.")],
               "lr": old.config.meta.outer_lr}]
    if rule:
        groups.append({"params": [p for n, p in old.trainable.items() if n.startswith("rule.")],
                       "lr": old.config.meta.rule_outer_lr})
    adam = torch.optim.Adam(groups, lr=old.config.meta.outer_lr)  # what Trainer built before
    for iteration in range(4):
        assert new.step(iteration) == _old_step(old, adam, iteration)
    for (name, a), b in zip(new.learner.state_dict().items(), old.learner.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert new.optimizer.state_dict()["param_groups"] == adam.state_dict()["param_groups"]


@pytest.mark.parametrize("name,options,lr", TRAINING, ids=[t[0] for t in TRAINING])
def test_a_resumed_run_takes_the_same_next_steps_as_an_uninterrupted_one(name, options, lr, tmp_path):
    meta = {"outer_step": name, "outer_step_options": options, "outer_lr": lr, "rule_outer_lr": lr / 3}
    rule = {"name": "alfa", "lr": 0.02}  # two param groups
    straight = _trainer(_raw(tmp_path / "a", meta, rule))
    for iteration in range(4):
        straight.step(iteration)
    first = _trainer(_raw(tmp_path / "b", meta, rule))
    for iteration in range(2):
        first.step(iteration)
    first.iteration = 2
    first.save_state()
    resumed = _trainer(_raw(tmp_path / "b", meta, rule))
    assert resumed.load_state() and resumed.iteration == 2
    for iteration in range(2, 4):
        resumed.step(iteration)
    for (key, a), b in zip(resumed.learner.state_dict().items(), straight.learner.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    if name == "sngdm":
        assert all("momentum_buffer" in s for s in resumed.optimizer.state.values())


def test_runs_and_checkpoints_written_before_the_outer_step_existed_load_and_resume(tmp_path, monkeypatch):
    """Their stored configs have no meta.outer_step or outer_step_options: they trained with Adam, the default."""
    raw = _raw(tmp_path)
    trainer = _trainer(raw)
    trainer.step(0)
    trainer.iteration = 1
    full = TrainConfig.to_dict

    def as_before(self):
        stored = full(self)
        for key in ADDED_META_KEYS:
            del stored["meta"][key]
        return stored

    monkeypatch.setattr(TrainConfig, "to_dict", as_before)
    trainer.save_state()
    trainer.save_deployable("last.safetensors", None)
    monkeypatch.undo()
    assert "outer_step" not in read_header(tmp_path / "run" / "state.safetensors")["config"]["meta"]
    stored = read_metadata(tmp_path / "run" / "last.safetensors").training
    assert "outer_step" not in stored.config["meta"] and stored.train_config().meta.outer_step == "adam"
    resumed = _trainer(raw)
    assert resumed.load_state() and resumed.iteration == 1
    straight = _trainer(_raw(tmp_path / "straight"))
    for iteration in range(2):
        straight.step(iteration)
    resumed.step(1)
    for a, b in zip(resumed.learner.parameters(), straight.learner.parameters(), strict=True):
        assert torch.equal(a, b)
    # Another outer step is another experiment: resuming it is refused.
    other = _trainer(_raw(tmp_path, {"outer_step": "sngdm"}))
    with pytest.raises(ValueError, match="differs in: meta"):
        other.load_state()
