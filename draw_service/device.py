"""Which torch device a run, an evaluation or a Serve replica uses: `auto`, `cpu` or `cuda`."""

from __future__ import annotations

import torch


def pick_device(pref: str) -> torch.device:
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is visible")
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)
