"""What a distributed meta-training run is compared with: the single-process run, and how far apart rounding lets them be.

Used by tests/core/test_distributed.py and bench/multihost_torchrun.py. :func:`sine_config` is a tiny sine-regression
config; :func:`launch_ranks` starts ``python -m core train`` once per rank with the environment torchrun would give
it; :func:`single_process_reference` runs the same iterations in this process and returns the weights together with
the per-component tolerance :func:`adam_tolerance` derives.

The tolerance (float32, per weight component, after ``T`` Adam steps)
--------------------------------------------------------------------
1. *The meta-gradient.* With ``N`` tasks split over ranks in blocks whose sizes ``n_r`` are powers of two (as ``N``),
   every rank computes each task's gradient bit for bit as one process does, up to the exact factor ``n_r / N``
   (the estimator divides the loss by its task count before backpropagating, and a power-of-two scale commutes
   with every rounding). Only the order of the sum over tasks differs: one process adds the ``N`` terms
   ``g_t / N`` left to right, the ranks add their blocks and the all-reduce adds the blocks' sums. Each order's
   error is at most ``gamma(N - 1) * sum_t |g_t| / N`` (Higham, "Accuracy and Stability of Numerical
   Algorithms", 2nd ed., eq. 4.6; ``tests.tolerances.gamma``), so the two gradients differ by at most
   ``delta_k = 2 gamma(N - 1) sum_t |g_{k,t}| / N`` in every component, at iteration ``k``.
2. *Adam.* ``m_k = b1 m + (1 - b1) g_k``, ``v_k = b2 v + (1 - b2) g_k^2``, update
   ``lr / c1 * m_k / (sqrt(v_k) / sqrt(c2) + eps)`` with ``c_i = 1 - b_i^k`` (``torch.optim.Adam``). Gradient errors
   ``|e_j| <= delta_j`` move ``m_k`` by at most ``M_k = sum_j (1 - b1) b1^(k-j) delta_j`` and ``sqrt(v_k)`` (a
   weighted 2-norm of the gradients so far) by at most ``S_k = sqrt(sum_j (1 - b2) b2^(k-j) delta_j^2)`` (the
   triangle inequality). With ``D = sqrt(v_k / c2) + eps`` and ``dD = S_k / sqrt(c2)``, the quotient moves by at
   most ``(M_k D + |m_k| dD) / (D max(D - dD, eps))``, times ``lr / c1``. Where a gradient component is no larger
   than its own rounding error, this bound is as large as Adam's step itself: rounding leaves that component
   undetermined, and the bound says so instead of hiding it.
3. *Rounding of the step itself.* The two runs apply the same Adam arithmetic to different inputs, so their
   rounding errors differ: about ten rounded operations make the update (lerp for ``m``; mul, addcmul, sqrt, div, add
   for the denominator; addcdiv), each side ``gamma(10) |update|`` off, and the new weight is rounded once more,
   ``u |w|``; twice that (both sides) per step.
4. *Feedback* of a weight difference into the next iterations' gradients is left out: it enters the weights
   multiplied by the learning rate, a second-order term next to (1)-(3) at these rates (1e-3 and 1e-4).

The sum of (2) and (3) over the ``T`` steps bounds ``|w_distributed - w_single|`` per component. Before a
comparison means anything, the runs must differ from their start by far more than the bound: the caller checks that.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tests.support.ports import free_port
from tests.tolerances import gamma, unit_roundoff

REPO = Path(__file__).resolve().parents[2]

SINE = """
name = "sine-distributed"
seed = 0
output_dir = "{output}"

[data]
kind = "sine"

[task]
k_shot = 5
n_query = 10

[model]
backbone = {{ name = "mlp", hidden = [20, 20] }}

[rule]
name = "{rule}"
lr = 0.01
{rule_extra}

[meta]
estimator = "maml"
meta_batch = {meta_batch}
iterations = {iterations}
outer_lr = 1e-3
rule_outer_lr = 1e-4
inner_steps = 2
eval_inner_steps = 2

[validation]
every = 1000
episodes = 4

[checkpoint]
every = 1
"""


def sine_config(path: Path, output: Path, rule: str, iterations: int, meta_batch: int = 4) -> Path:
    """Write the tiny config: second-order MAML (``rule = "sgd"``) or ALFA (``rule = "alfa"``) on sine regression."""
    extra = 'generator_init = "identity"' if rule == "alfa" else ""
    path.write_text(
        SINE.format(output=output, rule=rule, rule_extra=extra, meta_batch=meta_batch, iterations=iterations)
    )
    return path


@dataclass(frozen=True)
class RankLaunch:
    """One rank's ``python -m core train`` run: its working folder and ``--output-dir``."""

    cwd: Path
    output: Path


def launch_ranks(
    config: Path, launches: Sequence[RankLaunch], extra: Sequence[str] = (), timeout: float = 120
) -> list[subprocess.CompletedProcess]:
    """Run ``python -m core train --config CONFIG`` once per rank, with the environment torchrun gives its workers
    (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) on 127.0.0.1; wait for all; return their results."""
    port = free_port()
    processes = []
    for rank, launch in enumerate(launches):
        environment = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(len(launches)),
            "LOCAL_WORLD_SIZE": str(len(launches)),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO),
        }
        command = [
            sys.executable,
            "-m",
            "core",
            "train",
            "--config",
            str(config),
            "--output-dir",
            str(launch.output),
            "--device",
            "cpu",
            "--no-progress",
            *extra,
        ]
        processes.append(
            subprocess.Popen(
                command, cwd=launch.cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@dataclass
class Reference:
    """The single-process run: weights before and after, and the derived bound on a distributed run's distance."""

    initial: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    tolerance: dict[str, torch.Tensor]
    diagnostics: list[dict[str, float]]  # what Trainer.step returned at each iteration (loss, metric...)


def single_process_reference(config_path: Path, iterations: int) -> Reference:
    """Meta-train ``iterations`` steps in this process (``core.train.Trainer.step``, as ``python -m core train``
    does), recording each task's own meta-gradient at every iteration to derive :func:`adam_tolerance`."""
    from core.config import load_config

    config = load_config(config_path)
    if config.meta.multi_step_loss or config.meta.cosine_schedule or config.meta.outer_step != "adam":
        raise ValueError("the derived tolerance covers Adam at a constant rate on the last step's query loss")
    # The bound covers one difference only, the order of the sum over tasks: each task's own gradient must come out
    # of the same kernels, bit for bit. The number of intra-op threads splits a kernel's sums differently, so the
    # reference runs on one thread, as the ranks do (OMP_NUM_THREADS=1 in launch_ranks), whatever this process has.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _single_process_reference(config, iterations)
    finally:
        torch.set_num_threads(threads)


def _single_process_reference(config, iterations: int) -> Reference:
    from core.meta.estimator import LAST_STEP
    from core.train import Trainer

    trainer = Trainer(config, device="cpu", progress=False)
    names = list(trainer.trainable)
    initial = {n: t.detach().clone() for n, t in trainer.learner.state_dict().items()}
    per_task: list[list[dict[str, torch.Tensor]]] = []
    weights_after: list[dict[str, torch.Tensor]] = []
    diagnostics = []
    for iteration in range(iterations):
        per_task.append([trainer.estimator.meta_grad([task], LAST_STEP).grads for task in trainer.tasks(iteration)])
        diagnostics.append(trainer.step(iteration))
        weights_after.append({n: trainer.trainable[n].detach().clone() for n in names})
    group_of = {id(p): group for group in trainer.optimizer.param_groups for p in group["params"]}
    hyper = {n: group_of[id(trainer.trainable[n])] for n in names}
    tolerance = adam_tolerance(
        per_task,
        weights_after,
        lr={n: hyper[n]["lr"] for n in names},
        betas={n: hyper[n]["betas"] for n in names},
        eps={n: hyper[n]["eps"] for n in names},
    )
    final = {n: t.detach().clone() for n, t in trainer.learner.state_dict().items()}
    return Reference(initial, final, tolerance, diagnostics)


def adam_tolerance(
    per_task: list[list[dict[str, torch.Tensor]]],
    weights_after: list[dict[str, torch.Tensor]],
    lr: dict[str, float],
    betas: dict[str, tuple[float, float]],
    eps: dict[str, float],
) -> dict[str, torch.Tensor]:
    """Per component, the bound of the module docstring on ``|w_distributed - w_single|`` after the Adam steps whose
    per-task gradients (``per_task[k][t]``, task ``t``'s own meta-gradient at iteration ``k``) and resulting weights
    are given. Computed in float64."""
    u = unit_roundoff(torch.float32)
    bounds = {}
    for name in weights_after[0]:
        b1, b2 = betas[name]
        m = v = big_m = s2 = total = None
        for k, tasks in enumerate(per_task, start=1):
            count = len(tasks)
            if count & (count - 1):
                raise ValueError(f"the bound assumes a power-of-two meta-batch, not {count}")
            terms = torch.stack([task[name].double() / count for task in tasks])
            g = terms.sum(0)
            delta = 2 * gamma(count - 1, torch.float32) * terms.abs().sum(0)
            m = (1 - b1) * g if m is None else b1 * m + (1 - b1) * g
            v = (1 - b2) * g**2 if v is None else b2 * v + (1 - b2) * g**2
            big_m = (1 - b1) * delta if big_m is None else b1 * big_m + (1 - b1) * delta
            s2 = (1 - b2) * delta**2 if s2 is None else b2 * s2 + (1 - b2) * delta**2
            c1, c2 = 1 - b1**k, 1 - b2**k
            denominator = v.sqrt() / math.sqrt(c2) + eps[name]
            d_denominator = s2.sqrt() / math.sqrt(c2)
            lowest = torch.clamp(denominator - d_denominator, min=eps[name])
            moved = lr[name] / c1 * (big_m * denominator + m.abs() * d_denominator) / (denominator * lowest)
            update = lr[name] / c1 * m.abs() / denominator
            rounding = 2 * (gamma(10, torch.float32) * update + u * weights_after[k - 1][name].double().abs())
            step = moved + rounding
            total = step if total is None else total + step
        bounds[name] = total
    return bounds


def largest_excess(weights: dict[str, torch.Tensor], reference: Reference) -> tuple[str, float]:
    """The component where ``|weights - reference|`` exceeds the tolerance most: (name, distance / tolerance), the
    ratio at most 1 when the run is within the bound everywhere."""
    worst = ("", 0.0)
    for name, tolerance in reference.tolerance.items():
        distance = (weights[name].double() - reference.weights[name].double()).abs()
        # A zero bound (a zero weight whose gradients were all zero) admits only a zero distance.
        ratio = float(torch.where(distance == 0, 0.0, distance / tolerance).max())
        if ratio > worst[1]:
            worst = (name, ratio)
    return worst
