"""`draw-service train`: a run in this process, or on Ray Train when it asks for workers."""

from __future__ import annotations

from typing import Any

from .config import TrainConfig


def train_command(cfg: TrainConfig) -> dict[str, Any]:
    if cfg.ray.max_workers > 0:
        from .on_ray import fit

        return fit(cfg)
    from .loop import train_loop
    from .session import LocalSession

    session = LocalSession(cfg.out, cfg.device, resume=cfg.resume, keep=cfg.keep_checkpoints)
    return train_loop(cfg, session)
