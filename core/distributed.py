"""Meta-training across processes and hosts with ``torch.distributed``, started by ``torchrun``.

``torchrun --nproc-per-node K -m core train --config FILE`` starts K copies of ``python -m core train``; torchrun
gives each its ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous (``MASTER_ADDR``/``MASTER_PORT``). A
process whose ``WORLD_SIZE`` is 1 (or unset) trains alone, exactly as without torchrun.

Data parallelism over the meta-batch (the tasks of one outer iteration, which MAML-style training averages):

- :meth:`Ranks.share` splits the meta-batch's task indices into contiguous blocks, one per rank, as even as the
  counts allow (the first ``meta_batch % K`` ranks take one task more);
- each rank's estimator averages over its own tasks; :func:`all_reduce_meta_gradient` weights that average by the
  rank's task count and sums across ranks in one all-reduce, which is the mean over the whole meta-batch, i.e. the
  meta-gradient one process computes (up to the order of the floating-point sum); the loss, metric and
  diagnostics are averaged the same way, and the count of ranks whose estimate was not finite travels in the same
  buffer, so that every rank takes the same skip decision;
- every rank applies the same reduced gradient with its own copy of the outer optimizer, so the replicas stay equal
  without sending weights: all-reduce gives every rank the same bits.

Rank 0 ("main") alone reads and writes files (resume state, checkpoints, history, validation, progress);
:func:`broadcast_from_main` hands what it read (or the error it met) to the other ranks.

Backends, chosen by device: gloo on the CPU, NCCL on CUDA (each process on ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from core.device import pick_device
from core.meta.estimator import MetaGradient

__all__ = [
    "Ranks",
    "all_reduce_meta_gradient",
    "backend_for",
    "barrier",
    "broadcast_from_main",
    "process_group",
    "ranks_from_environment",
]

# How long a rank waits in a collective for the others. Rank 0 validates and writes checkpoints while the other
# ranks wait in the next iteration's all-reduce, and a long validation (hundreds of episodes of a large backbone on
# a CPU) can outlast torch's 30-minute default. A rank that dies closes its connections, which fails the others'
# collectives at once, so this long limit only bounds a hang, not a crash.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=3)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (from torchrun's environment variables)."""

    rank: int
    world_size: int
    local_rank: int

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"RANK {self.rank} is not in 0..{self.world_size - 1} (WORLD_SIZE {self.world_size})")
        if self.local_rank < 0:
            raise ValueError(f"LOCAL_RANK must be >= 0, not {self.local_rank}")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that reads and writes the run's files."""
        return self.rank == 0

    def share(self, count: int) -> range:
        """This rank's positions ``0..count-1`` of a meta-batch of ``count`` tasks: a contiguous block, the first
        ``count % world_size`` ranks taking one more. Refuses a meta-batch with fewer tasks than ranks."""
        if count < self.world_size:
            raise ValueError(
                f"meta.meta_batch {count} is smaller than the {self.world_size} training processes: every process "
                f"needs at least one task of each meta-batch; use at most {count} processes or a larger meta_batch"
            )
        base, extra = divmod(count, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (1 if self.rank < extra else 0))


def ranks_from_environment(environ: Mapping[str, str] | None = None) -> Ranks | None:
    """The ranks torchrun set, or None for a process alone (``WORLD_SIZE`` unset or 1)."""
    environ = os.environ if environ is None else environ
    world_size = _integer(environ, "WORLD_SIZE", "1")
    if world_size <= 1:
        return None
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE is {world_size} but {', '.join(missing)} is not set: start the processes with torchrun "
            "(torchrun --nproc-per-node K -m core train --config FILE)"
        )
    rank = _integer(environ, "RANK")
    return Ranks(rank=rank, world_size=world_size, local_rank=_integer(environ, "LOCAL_RANK", str(rank)))


def _integer(environ: Mapping[str, str], name: str, default: str | None = None) -> int:
    text = environ.get(name, default)
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name} must be an integer, not {text!r}") from None


def device_for(ranks: Ranks, requested: str | None) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when the requested (or automatic) device is CUDA, else it."""
    device = pick_device(requested)
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if ranks.local_rank >= count:
        raise ValueError(
            f"LOCAL_RANK {ranks.local_rank} has no GPU: this host has {count}; start at most {count} processes per "
            "host (--nproc-per-node) or train on the CPU (--device cpu)"
        )
    return torch.device("cuda", ranks.local_rank)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes (torch.distributed's recommendation for each)."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(ranks: Ranks, requested_device: str | None) -> Iterator[torch.device]:
    """Join the training processes (NCCL on CUDA, gloo otherwise) for the ``with`` block; yields this rank's device.

    The group is always destroyed on the way out. An exception is re-raised with the rank that met it, since
    torchrun interleaves the output of every process.
    """
    device = device_for(ranks, requested_device)
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend,
        init_method="env://",
        rank=ranks.rank,
        world_size=ranks.world_size,
        timeout=COLLECTIVE_TIMEOUT,
        device_id=device if device.type == "cuda" else None,
    )
    try:
        yield device
    except BaseException as error:
        error.add_note(f"(in training process rank {ranks.rank} of {ranks.world_size})")
        raise
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank arrives (no-op without a process group)."""
    if dist.is_initialized():
        dist.barrier()


def broadcast_from_main(ranks: Ranks, payload: Any) -> Any:
    """Rank 0's ``payload`` on every rank (pickled; tensors should be on the CPU so each rank puts them on its own
    device). When rank 0 sends an exception, every rank raises it, so all stop with rank 0's message."""
    box = [payload if ranks.is_main else None]
    dist.broadcast_object_list(box, src=0)
    received = box[0]
    if isinstance(received, BaseException) and not ranks.is_main:
        raise received
    return received


def all_reduce_meta_gradient(estimate: MetaGradient, local_tasks: int, total_tasks: int) -> tuple[MetaGradient, int]:
    """The meta-batch's meta-gradient from every rank's ``estimate`` over its ``local_tasks`` of ``total_tasks``.

    Each rank's estimate is a mean over its tasks, so the meta-batch mean is ``sum_r (n_r / N) * estimate_r``:
    gradients, loss, metric and diagnostics are scaled by ``n_r / N`` and summed in one all-reduce of one flat
    buffer. The same buffer counts the ranks whose gradients were not finite, returned as the second value, so the
    skip decision is the same everywhere. Every rank gets the same bits back.
    """
    names = list(estimate.grads)
    grads = [estimate.grads[name] for name in names]
    weight = local_tasks / total_tasks
    diagnostic_names = sorted(estimate.diagnostics)
    finite = all(bool(torch.isfinite(g).all()) for g in grads)
    # Scaled by n_r / N before the sum: each term of the single-process mean carries 1 / N the same way.
    flat = torch.cat([g.reshape(-1) * weight for g in grads])
    # The scalars in float64, as the single process averages them in Python floats; the non-finite count unscaled.
    scalars = [estimate.loss, 0.0 if estimate.metric is None else estimate.metric]
    scalars = [value * weight for value in [*scalars, *(estimate.diagnostics[n] for n in diagnostic_names)]]
    scalars = torch.tensor([*scalars, 0.0 if finite else 1.0], dtype=torch.float64, device=flat.device)
    dist.all_reduce(flat)
    dist.all_reduce(scalars)
    reduced, offset = {}, 0
    for name, g in zip(names, grads):
        reduced[name] = flat[offset : offset + g.numel()].view_as(g)
        offset += g.numel()
    values = scalars.tolist()
    loss, metric, diagnostic_values, nonfinite = values[0], values[1], values[2:-1], values[-1]
    result = MetaGradient(
        reduced, loss, None if estimate.metric is None else metric, dict(zip(diagnostic_names, diagnostic_values))
    )
    return result, round(nonfinite)
