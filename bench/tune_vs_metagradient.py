"""Seed 000's comparison: the inner learning rate tuned black-box (TPE) against learned by meta-gradient.

    OMP_NUM_THREADS=1 python bench/tune_vs_metagradient.py run     # trains every arm, writes the json
    python bench/tune_vs_metagradient.py plot                      # the figure from the json

Meta-learning is hyperparameter optimisation of what governs the inner loop (seed 000, ``../shared/papers/``). The
inner rate can be found two ways: by a black-box search over whole training runs (Optuna's TPE, Bergstra et al.
2011), or as a meta-parameter learned by the meta-gradient along with the initialisation (MAML++'s per-layer,
per-step rates, Antoniou et al. 2019, ``per_step``; ALFA's generated per-step rates and decays, Baik et al. 2020,
``alfa``). Four arms on the Omniglot Conv4 recipe (``configs/omniglot/conv4_maml.toml``: 5-way 1-shot, MAML second
order, 5 inner steps, meta-batch 4), each with the same compute budget:

* ``tpe_one_rate``: TPE over the one inner rate of ``sgd`` (log-uniform on [1e-3, 1]); the initialisation is
  meta-learned by MAML in each trial;
* ``tpe_per_layer``: TPE over one rate per layer (the four convolutions and the head, log-uniform on [1e-3, 1]),
  fixed during the trial (``per_step`` with one step and a zero outer rate for the rates);
* ``per_step``: one run, the per-layer, per-step rates learned by meta-gradient (initial value the recipe's 0.1);
* ``alfa``: one run, ALFA's rates and decays generated per step and meta-learned (``configs/omniglot/
  conv4_alfa_maml.toml``'s rule).

Compute is counted in task-gradients: one outer iteration takes ``meta_batch * (inner_steps + 1)`` of them (each
task's inner-step gradients and its query-loss gradient). A TPE arm spends the budget on ``budget_iterations /
trial_iterations`` trials of ``trial_iterations`` iterations; a meta-gradient arm on one run of ``budget_iterations``.
Both see the same number of validations (one per ``trial_iterations`` iterations, not counted in the budget), and
the curve is the best validation accuracy found so far against the task-gradients spent. Each arm's chosen
checkpoint (the TPE arm's best trial, the run's best validation) is then measured on the held-out alphabets
(Japanese_(katakana), Tagalog): 5-way 1-shot, 15 queries, ``--test-episodes`` episodes, seed 12345, mean and 95% CI.
Second-order MAML's gradients through the inner loop cost more than a plain gradient; every arm pays the same
per iteration (ALFA's generator and the rates' gradients add a little), so the count compares like with like.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULT = ROOT / "bench" / "results" / "tune_vs_metagradient.json"
FIGURE = ROOT / "bench" / "results" / "tune_vs_metagradient.png"
RECIPE = ROOT / "configs" / "omniglot" / "conv4_maml.toml"
ALFA_RECIPE = ROOT / "configs" / "omniglot" / "conv4_alfa_maml.toml"
ARMS = ("tpe_one_rate", "tpe_per_layer", "per_step", "alfa")
RATE_RANGE = (1e-3, 1.0)
TEST_WAY, TEST_SHOT, TEST_QUERY, TEST_SEED = 5, 1, 15, 12345


@dataclass(frozen=True)
class Budget:
    budget_iterations: int  # every arm's meta-training, in outer iterations of the recipe
    trial_iterations: int  # one TPE trial; also the meta-gradient runs' validation interval
    filters: int  # Conv4 width (the recipe's 64; fewer for a CPU-sized run)
    val_episodes: int
    test_episodes: int
    device: str
    output: Path

    @property
    def trials(self) -> int:
        return self.budget_iterations // self.trial_iterations


def task_gradients_per_iteration(config) -> int:
    return config.meta.meta_batch * (config.meta.inner_steps + 1)


def arm_config(arm: str, budget: Budget, iterations: int, output: Path, rule: dict):
    """The recipe with the arm's rule, width, budget and validation schedule."""
    import tomllib

    from core.config import config_from_dict

    raw = tomllib.loads(RECIPE.read_text())
    raw["name"] = f"tune-vs-metagradient-{arm}"
    raw["output_dir"] = str(output)
    raw["data"]["download"] = False
    raw["model"]["backbone"]["filters"] = budget.filters
    raw["rule"] = rule
    raw["meta"]["iterations"] = iterations
    if arm == "alfa":
        raw["meta"].update({k: v for k, v in tomllib.loads(ALFA_RECIPE.read_text())["meta"].items() if "outer" in k})
    if arm == "tpe_per_layer":
        raw["meta"]["rule_outer_lr"] = 0.0  # the trial's rates stay as TPE chose them
    raw["validation"] = {"every": budget.trial_iterations, "episodes": budget.val_episodes}
    raw["checkpoint"] = {"every": budget.trial_iterations}
    return config_from_dict(raw)


def train(config, budget: Budget, layer_rates: dict[str, float] | None = None) -> tuple[list[dict], Path, float]:
    """Meta-train ``config``; returns the validation points, the best checkpoint and the training seconds."""
    import torch

    from core.rules.base import param_key
    from core.train import Trainer

    trainer = Trainer(config, device=budget.device, progress=False)
    if layer_rates is not None:  # per_step with one step: one rate tensor per parameter tensor
        with torch.no_grad():
            for name in trainer.learner.rule.layer_names:
                layer = name.rsplit(".", 1)[0]
                trainer.learner.rule.rates[param_key(name)].fill_(layer_rates[layer])
    points: list[dict] = []
    trainer.run(on_validation=lambda iteration, score: points.append({"iteration": iteration, "accuracy": score}))
    return points, config.output_path() / "best.safetensors", trainer.wall_seconds


def held_out(checkpoint: Path, config, budget: Budget) -> dict:
    from core.checkpoint import load_learner
    from core.data.factory import build_image_set
    from core.evaluate import evaluate_classification

    learner, _ = load_learner(checkpoint, device=budget.device)
    result = evaluate_classification(
        learner,
        build_image_set(config, "test"),
        TEST_WAY,
        TEST_SHOT,
        TEST_QUERY,
        budget.test_episodes,
        config.meta.eval_inner_steps,
        seed=TEST_SEED,
        progress=False,
    )
    return {"accuracy": result.mean, "ci95": result.ci95, "episodes": budget.test_episodes}


def run_tpe_arm(arm: str, budget: Budget) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    curve, trials, spent, best, seconds = [], [], 0, None, 0.0
    layers = None
    for number in range(budget.trials):
        trial = study.ask()
        output = budget.output / arm / f"trial_{number}"
        if arm == "tpe_one_rate":
            rate = trial.suggest_float("rule.lr", *RATE_RANGE, log=True)
            config = arm_config(arm, budget, budget.trial_iterations, output, {"name": "sgd", "lr": rate})
            points, checkpoint, wall = train(config, budget)
            params = {"rule.lr": rate}
        else:
            config = arm_config(
                arm, budget, budget.trial_iterations, output, {"name": "per_step", "lr": 0.1, "steps": 1}
            )
            if layers is None:
                from core.train import Trainer

                names = Trainer(config, device="cpu", progress=False).learner.rule.layer_names
                layers = sorted({name.rsplit(".", 1)[0] for name in names})
            params = {layer: trial.suggest_float(f"rate {layer}", *RATE_RANGE, log=True) for layer in layers}
            points, checkpoint, wall = train(config, budget, layer_rates=params)
        value = max(point["accuracy"] for point in points)
        study.tell(trial, value)
        seconds += wall
        spent += budget.trial_iterations * task_gradients_per_iteration(config)
        if best is None or value > best["validation"]:
            best = {"trial": number, "validation": value, "params": params, "checkpoint": str(checkpoint)}
        trials.append({"trial": number, "params": params, "validation": value})
        curve.append({"task_gradients": spent, "best_validation": best["validation"]})
        print(f"{arm} trial {number}: {params} validation {value:.4f}", file=sys.stderr, flush=True)
    test = held_out(Path(best["checkpoint"]), config, budget)
    return {"curve": curve, "trials": trials, "chosen": best, "test": test, "train_seconds": round(seconds, 1)}


def run_metagradient_arm(arm: str, budget: Budget) -> dict:
    import tomllib

    if arm == "per_step":
        rule = {"name": "per_step", "lr": 0.1}
    else:
        rule = tomllib.loads(ALFA_RECIPE.read_text())["rule"]
    config = arm_config(arm, budget, budget.budget_iterations, budget.output / arm, rule)
    points, checkpoint, seconds = train(config, budget)
    per_iteration = task_gradients_per_iteration(config)
    curve, best = [], float("-inf")
    for point in points:
        best = max(best, point["accuracy"])
        curve.append({"task_gradients": point["iteration"] * per_iteration, "best_validation": best})
        print(f"{arm} iteration {point['iteration']}: validation {point['accuracy']:.4f}", file=sys.stderr, flush=True)
    test = held_out(checkpoint, config, budget)
    return {
        "curve": curve,
        "validation": points,
        "chosen": {"validation": best, "checkpoint": str(checkpoint)},
        "test": test,
        "train_seconds": round(seconds, 1),
    }


def run(args: argparse.Namespace) -> None:
    budget = Budget(
        args.budget_iterations,
        args.trial_iterations,
        args.filters,
        args.val_episodes,
        args.test_episodes,
        args.device,
        Path(args.output),
    )
    if budget.budget_iterations % budget.trial_iterations:
        raise SystemExit("--budget-iterations must be a multiple of --trial-iterations")
    if budget.output.exists():
        raise SystemExit(f"{budget.output} exists (an earlier run's trials): remove it or pass another --output")
    started = time.perf_counter()
    arms = {}
    for arm in args.arms:
        arms[arm] = run_tpe_arm(arm, budget) if arm.startswith("tpe") else run_metagradient_arm(arm, budget)
    recipe = arm_config("sgd", budget, budget.budget_iterations, budget.output, {"name": "sgd", "lr": 0.1})
    payload = {
        "command": "OMP_NUM_THREADS=1 python " + shlex.join(["bench/tune_vs_metagradient.py", *sys.argv[1:]]),
        "recipe": str(RECIPE.relative_to(ROOT)),
        "budget": {
            "iterations": budget.budget_iterations,
            "task_gradients": budget.budget_iterations * task_gradients_per_iteration(recipe),
            "trial_iterations": budget.trial_iterations,
            "tpe_trials": budget.trials,
            "filters": budget.filters,
            "validation_episodes": budget.val_episodes,
        },
        "test_protocol": {
            "way": TEST_WAY,
            "shot": TEST_SHOT,
            "query": TEST_QUERY,
            "seed": TEST_SEED,
            "episodes": budget.test_episodes,
            "alphabets": list(recipe.data.test),
        },
        "device": budget.device,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "arms": arms,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({arm: value["test"] for arm, value in arms.items()}, indent=2))


def plot(_args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    payload = json.loads(RESULT.read_text())
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for arm, values in payload["arms"].items():
        xs = [point["task_gradients"] for point in values["curve"]]
        ys = [point["best_validation"] for point in values["curve"]]
        test = values["test"]
        axes.plot(
            xs, ys, marker="o", label=f"{arm} (held-out {100 * test['accuracy']:.1f} ± {100 * test['ci95']:.1f}%)"
        )
    axes.set_xlabel("task-gradients spent on meta-training")
    axes.set_ylabel("best validation accuracy so far")
    budget = payload["budget"]
    axes.set_title(f"Omniglot 5-way 1-shot, Conv4 ({budget['filters']} filters), {budget['iterations']} iterations")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(FIGURE, dpi=120)
    print(FIGURE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run")
    go.add_argument("--budget-iterations", type=int, default=120)
    go.add_argument("--trial-iterations", type=int, default=30)
    go.add_argument("--filters", type=int, default=32)
    go.add_argument("--val-episodes", type=int, default=50)
    go.add_argument("--test-episodes", type=int, default=200)
    go.add_argument("--device", default="cpu")
    go.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    go.add_argument("--output", default=str(ROOT / "runs" / "tune_vs_metagradient"))
    go.set_defaults(func=run)
    sub.add_parser("plot").set_defaults(func=plot)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
