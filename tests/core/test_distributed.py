"""Meta-training split across processes (core.distributed): the same weights as one process, files from rank 0 only,
resume under torchrun, errors reaching every rank.

The ranks are real ``python -m core train`` processes joined by gloo on 127.0.0.1, started with the environment
torchrun gives its workers (tests/support/distributed_reference.py); the resume runs under ``torchrun`` itself. The
weights are compared within the float32 bound derived in that module's docstring (sum order over the meta-batch,
carried through Adam), not within a tuned tolerance.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from core.checkpoint import read_metadata
from core.checkpoint.format import read_tensors
from core.distributed import Ranks, backend_for, ranks_from_environment
from tests.support.distributed_reference import (
    REPO,
    RankLaunch,
    largest_excess,
    launch_ranks,
    sine_config,
    single_process_reference,
)
from tests.tolerances import gamma

ITERATIONS = 3
RUN_FILES = {"best.safetensors", "history.jsonl", "last.safetensors", "state.safetensors"}


def test_the_meta_batch_is_split_into_contiguous_blocks_as_even_as_the_counts_allow():
    shares = [Ranks(rank, 4, rank).share(10) for rank in range(4)]
    assert shares == [range(3), range(3, 6), range(6, 8), range(8, 10)]
    assert [Ranks(rank, 2, rank).share(4) for rank in range(2)] == [range(2), range(2, 4)]
    with pytest.raises(ValueError, match="meta.meta_batch 2 is smaller than the 3 training processes"):
        Ranks(0, 3, 0).share(2)


def test_ranks_come_from_torchruns_environment_and_a_single_process_has_none():
    assert ranks_from_environment({}) is None
    assert ranks_from_environment({"WORLD_SIZE": "1", "RANK": "0"}) is None
    environment = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    assert ranks_from_environment(environment) == Ranks(rank=3, world_size=4, local_rank=1)
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT is not set: start the processes with torchrun"):
        ranks_from_environment({"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, not 'two'"):
        ranks_from_environment({"WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match=r"RANK 2 is not in 0..1"):
        ranks_from_environment({**environment, "WORLD_SIZE": "2", "RANK": "2"})
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 1)) == "nccl"


@pytest.mark.parametrize("rule", ["sgd", "alfa"], ids=["maml-second-order", "alfa"])
def test_two_processes_give_the_weights_of_one_process_with_the_whole_meta_batch(tmp_path, rule):
    config = sine_config(tmp_path / "config.toml", tmp_path / "unused", rule, ITERATIONS)
    folders = [tmp_path / "rank0", tmp_path / "rank1"]
    for folder in folders:
        folder.mkdir()
    # Each rank gets its own working folder and --output-dir: rank 1 must write into neither.
    launches = [RankLaunch(folders[0], tmp_path / "run"), RankLaunch(folders[1], tmp_path / "run-of-rank1")]
    results = launch_ranks(config, launches)
    for rank, result in enumerate(results):
        assert result.returncode == 0, f"rank {rank}:\n{result.stderr}"
    reference = single_process_reference(config, ITERATIONS)

    assert {path.name for path in (tmp_path / "run").iterdir()} == RUN_FILES
    assert list(folders[1].iterdir()) == [] and not (tmp_path / "run-of-rank1").exists()
    assert list(folders[0].iterdir()) == []
    assert json.loads(results[0].stdout)["iterations"] == ITERATIONS and results[1].stdout == ""

    weights = read_tensors(tmp_path / "run" / "last.safetensors")
    assert set(weights) == set(reference.weights)
    name, ratio = largest_excess(weights, reference)
    assert ratio <= 1, f"{name}: {ratio:.3g} times the derived float32 bound from the single-process weights"
    # The comparison means something: the bound is far below what the three steps moved the weights (a dead unit's
    # weights, with zero gradients, do not move, hence the median).
    moved = torch.cat(
        [(reference.weights[n] - reference.initial[n]).abs().double().flatten() for n in reference.tolerance]
    )
    bound = torch.cat([reference.tolerance[n].flatten() for n in reference.tolerance])
    assert float((moved / bound)[bound > 0].median()) > 1000  # bound 0: a zero weight with zero gradients
    metadata = read_metadata(tmp_path / "run" / "last.safetensors")
    assert metadata.training.iterations == ITERATIONS and metadata.training.tasks_seen == 4 * ITERATIONS

    # The loss in the history is the meta-batch's mean, averaged the same way: the float64 sum of four non-negative
    # losses in two orders, each at most gamma(3) * sum |loss| / 4 off (Higham 4.6).
    record = json.loads((tmp_path / "run" / "history.jsonl").read_text().splitlines()[-1])
    assert record["iteration"] == ITERATIONS
    single_loss = reference.diagnostics[-1]["loss"]
    assert abs(record["train"]["loss"] - single_loss) <= 2 * gamma(3, torch.float64) * single_loss


@pytest.mark.slow  # three launches of two processes
def test_resume_under_torchrun_continues_to_the_weights_of_an_uninterrupted_run(tmp_path):
    config = sine_config(tmp_path / "config.toml", tmp_path / "unused", "alfa", 4)
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    results = launch_ranks(config, [RankLaunch(tmp_path, straight)] * 2)
    results += launch_ranks(config, [RankLaunch(tmp_path, halves)] * 2, extra=["--iterations", "2"])
    assert all(result.returncode == 0 for result in results), [result.stderr for result in results]
    assert read_metadata(halves / "last.safetensors").training.iterations == 2

    torchrun = shutil.which("torchrun") or pytest.fail("torch's torchrun launcher is not on PATH")
    resumed = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "core",
            "train",
            "--config",
            str(config),
            "--output-dir",
            str(halves),
            "--resume",
            "--iterations",
            "4",
            "--device",
            "cpu",
            "--no-progress",
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {halves} at iteration 2" in resumed.stderr
    # Same split, same all-reduce order: bit for bit the uninterrupted run.
    a, b = read_tensors(straight / "last.safetensors"), read_tensors(halves / "last.safetensors")
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)
    assert read_metadata(halves / "last.safetensors").training.tasks_seen == 16


def test_rank_0s_error_stops_every_rank_with_its_message(tmp_path):
    config = sine_config(tmp_path / "config.toml", tmp_path / "unused", "sgd", 1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.safetensors").write_bytes(b"a run's state")
    # Without --resume rank 0 refuses to overwrite the run, and rank 1 (which never looks at the folder) stops with
    # rank 0's reason instead of waiting for it.
    results = launch_ranks(config, [RankLaunch(tmp_path, run)] * 2)
    for rank, result in enumerate(results):
        assert result.returncode == 2, result.stderr
        assert "already holds a training run; pass --resume" in result.stderr
        assert f"(in training process rank {rank} of 2)" in result.stderr


def test_a_single_process_never_starts_a_process_group(tmp_path, monkeypatch):
    """Without torchrun nothing changes: ``python -m core train`` trains alone (WORLD_SIZE unset)."""
    import torch.distributed

    from core.cli import main

    def refuse(*args, **kwargs):
        raise AssertionError("a single process started a process group")

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.distributed, "init_process_group", refuse)
    config = sine_config(tmp_path / "config.toml", tmp_path / "run", "sgd", 1)
    assert main(["train", "--config", str(config), "--device", "cpu", "--no-progress"]) == 0
    assert {path.name for path in (tmp_path / "run").iterdir()} == RUN_FILES


@pytest.mark.slow
def test_two_hosts_meta_train_together_with_torchrun_and_c10d_rendezvous(tmp_path):
    """bench/multihost_torchrun.py: rank 0 on one network namespace, rank 1 on another, over their veth pair."""
    from tests.support.netns import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the two-host training: {reason}")
        pytest.skip(reason)
    # bench/ is a folder of scripts, not a package: load the script by its path, as tests/bench does.
    spec = importlib.util.spec_from_file_location("multihost_torchrun", REPO / "bench" / "multihost_torchrun.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up while the module runs
    spec.loader.exec_module(bench)

    result = bench.train_on_two_hosts(tmp_path, iterations=ITERATIONS, rule="alfa")
    assert [run.returncode for run in result.hosts] == [0, 0], [run.stderr_tail for run in result.hosts]
    assert len(result.hosts_that_wrote) == 1  # rank 0's host, whichever the rendezvous made rank 0
    assert result.largest_distance_over_bound <= 1, result.worst_tensor
