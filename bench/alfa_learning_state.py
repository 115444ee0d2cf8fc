"""Why a checkpoint's ALFA generator gives every episode the same alpha/beta: its inputs, and how much they move it.

ALFA (Baik et al. 2020, eq. 4) feeds the generator the task learning state ``tau = [mean theta_1..N, mean
grad_1..N]``. For each ALFA checkpoint this adapts ``--episodes`` held-out episodes and records, per inner step,
every component of ``tau`` and of the generator's output. It reports, per component:

* ``mean`` and ``std`` across episodes of the input (how much of the learning state depends on the episode);
* ``rms_grad``: the root mean square of that layer's gradient elements, for scale (a layer-wise mean is small
  when the elements cancel, not when the gradient is small);
* ``sensitivity``: the largest ``|d output / d input_i|`` over outputs (the generator's Jacobian at the mean
  input), and ``sensitivity * std``: the first-order share of this input's episode-to-episode variation that
  reaches alpha~/beta~.

Then per output the relative spread across episodes (std / |mean|), as ``python -m core inspect-rule`` reports.

    OMP_NUM_THREADS=1 python bench/alfa_learning_state.py [--episodes 12] [--json bench/results/alfa_learning_state.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.adapt import adapt
from core.checkpoint import load_learner, read_metadata
from core.data.sampler import EpisodeSampler
from core.rule_spread import heldout_image_set

CHECKPOINTS = ("resnet12_alfa_maml", "conv4_alfa_maml", "conv4_alfa_random", "resnet12_alfa_random")


def record(path: Path, episodes: int, n_way: int, k_shot: int, seed: int) -> dict:
    learner, metadata = load_learner(path, device="cpu")
    rule = learner.rule
    image_set, described = heldout_image_set(read_metadata(path))
    sampler = EpisodeSampler(image_set, n_way, k_shot, 5, seed=seed)
    inputs: list[list[torch.Tensor]] = []
    grad_rms: list[list[torch.Tensor]] = []
    original = rule.generator_input

    def recording(params, grads):
        tau = original(params, grads)
        inputs[-1].append(tau.detach().clone())
        grad_rms[-1].append(torch.stack([grads[n].detach().pow(2).mean().sqrt() for n in rule.layer_names]))
        return tau

    rule.generator_input = recording
    steps = metadata.inner_steps.eval
    try:
        for episode in sampler.episodes(episodes):
            inputs.append([])
            grad_rms.append([])
            adapt(learner, episode, steps)
    finally:
        del rule.generator_input
    tau = torch.stack([torch.stack(per_step) for per_step in inputs]).double()  # episodes x steps x 2N
    rms = torch.stack([torch.stack(per_step) for per_step in grad_rms]).double()  # episodes x steps x N
    generator = rule.generator.double()
    layers = list(rule.layer_names)
    n = len(layers)
    result = {"checkpoint": path.stem, "data": described, "episodes": episodes, "steps": steps, "layers": layers,
              "per_step": []}
    with torch.no_grad():
        outputs = generator(tau)  # episodes x steps x 2N
    for step in range(steps):
        mean_input = tau[:, step].mean(0)
        jacobian = torch.autograd.functional.jacobian(generator, mean_input)  # 2N x 2N (out x in)
        sensitivity = jacobian.abs().max(dim=0).values
        std = tau[:, step].std(0, unbiased=False)
        out_mean, out_std = outputs[:, step].mean(0), outputs[:, step].std(0, unbiased=False)
        rows = []
        for i in range(2 * n):
            kind = "weight mean" if i < n else "grad mean"
            rows.append({
                "input": f"{kind} {layers[i % n]}",
                "mean": float(mean_input[i]),
                "std": float(std[i]),
                "rms_grad": float(rms[:, step, i - n].mean()) if i >= n else None,
                "rms_grad_std": float(rms[:, step, i - n].std(unbiased=False)) if i >= n else None,
                "sensitivity": float(sensitivity[i]),
                "reach": float(sensitivity[i] * std[i]),
            })
        relative = (out_std / out_mean.abs().clamp_min(1e-30)).tolist()
        result["per_step"].append({
            "step": step,
            "inputs": rows,
            "alpha_tilde_relative_spread": dict(zip(layers, relative[:n])),
            "beta_tilde_relative_spread": dict(zip(layers, relative[n:])),
        })
    generator.float()
    return result


def summarise(result: dict) -> None:
    print(f"\n== {result['checkpoint']} ({result['data']}, {result['episodes']} episodes, {result['steps']} steps)")
    for entry in result["per_step"]:
        rows = entry["inputs"]
        n = len(rows) // 2
        weights, grads = rows[:n], rows[n:]
        w_rel = np.median([r["std"] / max(abs(r["mean"]), 1e-30) for r in weights])
        g_abs = np.median([abs(r["mean"]) for r in grads])
        g_std = np.median([r["std"] for r in grads])
        g_rms = np.median([r["rms_grad"] for r in grads])
        rms_rel = np.median([r["rms_grad_std"] / max(r["rms_grad"], 1e-30) for r in grads])
        reach_w = max(r["reach"] for r in weights)
        reach_g = max(r["reach"] for r in grads)
        top = max(rows, key=lambda r: r["reach"])
        spread = max(entry["alpha_tilde_relative_spread"].values())
        print(f" step {entry['step']}: weight-mean std/|mean| median {w_rel:.2e}; grad mean |m| median {g_abs:.2e}, "
              f"std across episodes {g_std:.2e}, grad rms {g_rms:.2e} (rms varies {rms_rel:.1%} across episodes); "
              f"largest reach: weights {reach_w:.2e}, grads {reach_g:.2e} ({top['input']}); "
              f"alpha~ max std/|mean| {spread:.2e}")
    last = result["per_step"][0]["inputs"]
    n = len(last) // 2
    head = [r for r in last[n:] if ".head" in r["input"] or "head" in r["input"]]
    for r in head:
        print(f"  step 0 {r['input']}: mean {r['mean']:.3e}, std {r['std']:.3e}, rms {r['rms_grad']:.3e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--way", type=int, default=5)
    parser.add_argument("--shot", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", action="append", help="a .safetensors file (default: the shipped ALFA ones)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"
    paths = [Path(p) for p in args.checkpoint] if args.checkpoint else [root / f"{n}.safetensors" for n in CHECKPOINTS]
    results = []
    for path in paths:
        result = record(path, args.episodes, args.way, args.shot, args.seed)
        summarise(result)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
