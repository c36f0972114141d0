"""Device choice shared by everything that runs a network: ``device="auto"`` means CUDA
when present, else CPU (using every core).

>>> resolve_device("cpu").type
'cpu'
"""

from __future__ import annotations

import os

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; a clear error for an absent CUDA."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def use_all_cores() -> int:
    """Let torch use every core this process may run on; returns the thread count.

    An explicit ``OMP_NUM_THREADS`` wins (several jobs sharing a machine must not each take
    every core: oversubscribed OpenMP threads spin and run many times slower)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        n = max(1, int(os.environ["OMP_NUM_THREADS"]))
        torch.set_num_threads(n)
        return n
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
    return n
