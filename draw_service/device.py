"""Which torch device a run, an evaluation or a Serve replica uses (`auto`, `cpu` or `cuda`), and how to
name the hardware a number was measured on."""

from __future__ import annotations

import os
import platform

import torch


def pick_device(pref: str) -> torch.device:
    if pref == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is visible (use --device cpu or auto)")
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def describe(device: torch.device) -> dict[str, object]:
    """The hardware behind a measurement on `device`: recorded in checkpoints and benchmark results."""
    info: dict[str, object] = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                               "torch": str(torch.__version__)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
