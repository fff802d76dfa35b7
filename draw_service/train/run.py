"""`draw-service train`: a run in this process, or on Ray Train when it asks for workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import TrainConfig


def train_command(cfg: TrainConfig) -> dict[str, Any]:
    if cfg.ray.max_workers > 0:
        from .on_ray import fit

        return fit(cfg)
    from .. import storage
    from .loop import train_loop
    from .session import LocalSession

    local = Path(storage.resolve(cfg.out).path) if storage.is_local(cfg.out) else None
    made = [d for d in (local, *local.parents) if not d.exists()] if local is not None else []
    try:
        session = LocalSession(cfg.out, cfg.device, resume=cfg.resume, keep=cfg.keep_checkpoints)
        return train_loop(cfg, session)
    except BaseException:
        for folder in made:  # a run that failed before writing anything leaves no empty folders behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
