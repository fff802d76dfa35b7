"""What every benchmark shares: the paper's configuration, stderr progress, the machine, a timer."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import torch

PAPER = dict(T=64, enc_size=256, dec_size=256, z_size=100, read_n=2, write_n=5)  # table 3's MNIST model
MNIST_SHAPE = (1, 28, 28)
BATCH = 100


def say(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    from draw_service.device import cpu_name

    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version()}


def best_time(fn, repeats: int, inner: int = 2) -> float:
    """The best of `repeats` timings of `inner` calls, per call (the least disturbed on a shared VM)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best
