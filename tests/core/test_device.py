"""Device choice and the host allocator setting."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from core.device import pick_device

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_pick_device_honours_an_explicit_cpu_and_the_environment(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("FEWSHOT_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_pick_device_refuses_cuda_where_there_is_none():
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")


# Allocates and frees a 256 MB tensor, then prints how much of it is still resident (MB).
_PROBE = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    import torch
    from core.device import tune_host_allocator
    applied = tune_host_allocator()
    page = os.sysconf("SC_PAGE_SIZE")
    def resident_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page / 2**20
    before = resident_mb()
    block = torch.ones(64 * 2**20)  # 256 MB, every page touched
    del block
    print(applied, round(resident_mb() - before))
    """
)


def _probe(env_value: str) -> tuple[str, int]:
    env = {"FEWSHOT_TUNE_MALLOC": env_value, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT)], capture_output=True, text=True, env=env, check=True)
    applied, kept_mb = out.stdout.split()
    return applied, int(kept_mb)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuned_allocator_keeps_freed_tensor_memory_for_reuse_and_can_be_switched_off():
    applied, kept_mb = _probe("1")
    assert applied == "True"
    assert kept_mb > 200  # the freed 256 MB stay in the heap, ready for the next activation
    applied, kept_mb = _probe("0")
    assert applied == "False"
    assert kept_mb < 50  # glibc's default: the block was mmap-ed and went straight back to the kernel
