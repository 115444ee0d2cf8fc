"""Device choice: CUDA, then Apple MPS, then CPU, unless the user forces one."""

from __future__ import annotations

import torch

from core import settings


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` (else the ``FEWSHOT_DEVICE`` setting) may be 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'.

    A device that is not available, or a name torch does not know, raises ValueError with a message.
    """
    requested = (requested or "").strip().lower() or settings.device_name()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:  # torch's answer to a malformed name
        raise ValueError(f"device {requested!r} is not one torch knows: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} was asked for but CUDA is not available on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {requested!r} was asked for but MPS is not available on this machine")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


# glibc's mallopt parameters (malloc.h); they are not exposed by Python.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_allocator_tuned: bool | None = None


def tune_host_allocator(keep_free_bytes: int = 1 << 30) -> bool:
    """Keep freed tensor memory inside the process instead of handing it back to the kernel after every op.

    glibc serves large blocks with ``mmap`` and unmaps them on ``free``, so a second-order meta-iteration,
    which allocates and frees hundreds of MB of activations per operation, spends much of its time
    page-faulting freshly zeroed pages: on 2 CPU cores the 84x84 4-CONV configuration took 8.4 s per
    iteration with 25 s of its 57 s CPU time in the kernel, and 5.0 s with 5 s in the kernel once every block
    came from the heap (``M_MMAP_MAX = 0``) and up to ``keep_free_bytes`` of free heap top was kept
    (``M_TRIM_THRESHOLD``). The price is a higher resident peak (2.8 GB to 3.4 GB there), as freed memory is
    reused rather than returned. The process entry points (CLI, benchmarks) call this; a library user may.

    Returns True once applied; False (changing nothing) off Linux/glibc, when the setting
    ``FEWSHOT_TUNE_MALLOC=0`` asks for the C library's defaults, or when the C library refuses. Call it early:
    it only changes how later blocks are served.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if not settings.tune_malloc():
        return False
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _allocator_tuned = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, keep_free_bytes))
    except (OSError, AttributeError):
        _allocator_tuned = False
    return _allocator_tuned
