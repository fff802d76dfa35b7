"""Which torch device a run, an evaluation or a Serve replica uses (`auto`, `cpu` or `cuda`), which precision
it computes in there (`auto`, `fp32` or `bf16`), and how to name the hardware a number was measured on."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16")
# CPU flags of native bf16 arithmetic: AVX-512's dot products, or AMX's tiles. Without them PyTorch emulates
# bf16 through fp32 and a bf16 step runs slower than an fp32 one (docs/speed.md, "bf16 on CPUs").
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def pick_device(pref: str) -> torch.device:
    import torch

    if pref == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is visible (use --device cpu or auto)")
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def _cpuinfo(field: str) -> str | None:
    """The first `field` line's value in /proc/cpuinfo, or None where there is none (not Linux, no such line)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith(field))
    except (OSError, StopIteration):
        return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    return frozenset((_cpuinfo("flags") or "").split())


def native_bf16(device: torch.device) -> str | None:
    """Why `device` computes bf16 natively (the CPU flag, or the GPU's support), or None where it does not."""
    import torch

    if device.type == "cuda":
        return "the GPU supports bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else None
    return next((flag for flag in BF16_CPU_FLAGS if flag in cpu_flags()), None)


def pick_precision(pref: str, device: torch.device) -> tuple[str, str]:
    """(`fp32` or `bf16`, why) for `--precision pref` on `device`: `auto` takes bf16 only where the hardware
    computes it natively, where it trains about 1.4x faster (docs/speed.md, "bf16 on CPUs"); elsewhere fp32."""
    if pref not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {pref!r}")
    native = native_bf16(device)
    if pref == "auto":
        return ("bf16", f"auto: {native}") if native else ("fp32", f"auto: no native bf16 on this {device.type}")
    return pref, "asked for" + ("" if pref == "fp32" or native else f" (no native bf16 on this {device.type}: "
                                                                      "slower than fp32)")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` for `precision` bf16 (weights stay fp32; matrix products run in bf16).
    Its weight-cast cache is off: it must be inside a CUDA graph capture, and costs little elsewhere."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def describe(device: torch.device) -> dict[str, object]:
    """The hardware behind a measurement on `device`: recorded in checkpoints and benchmark results."""
    import torch

    info: dict[str, object] = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                               "torch": str(torch.__version__)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["native_bf16"] = native_bf16(device)
    return info
