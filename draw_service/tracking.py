"""Experiment tracking: Weights & Biases (offline files unless told otherwise) and local pictures.

Only rank 0 of a run tracks. Without `WANDB_MODE` set, W&B runs offline and writes its run folder
under `<out>/wandb` (or a local cache folder when `out` is on S3); `wandb sync <folder>` uploads it
later. The API key is never read, printed or stored here: wandb finds it itself when online.
The same pictures W&B gets (sample grids, drawing GIFs) are written to `<out>/media/` either way.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from . import storage

log = logging.getLogger(__name__)


@dataclass
class TrackingConfig:
    wandb: bool = True  # log to Weights & Biases (offline files when there is no key or network)
    project: str = "draw-service"
    group: str | None = None  # a Tune search puts its trials in one group
    run_name: str | None = None
    media_every: int | None = None  # steps between sample grids and drawing GIFs; default: each evaluation
    media_samples: int = 64


def stable_run_id(out_uri: str) -> str:
    """The same output location gives the same W&B run id, so a resumed run continues its W&B run."""
    return "draw-" + hashlib.sha1(out_uri.encode()).hexdigest()[:10]


def wandb_dir(out: storage.Location) -> Path:
    if out.is_s3:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "draw-service" / "wandb"
        return base / stable_run_id(out.uri)
    return Path(out.path)


class Tracker:
    """Metrics and pictures of one run, to W&B and to `<out>/media`."""

    def __init__(self, cfg: TrackingConfig, run_config: dict[str, Any], out_uri: str):
        self.cfg = cfg
        self.out = storage.resolve(out_uri)
        self.run = None
        if cfg.wandb:
            import wandb

            mode = os.environ.get("WANDB_MODE", "offline")
            folder = wandb_dir(self.out)
            folder.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=cfg.project, group=cfg.group, name=cfg.run_name or self.out.name, config=run_config,
                dir=str(folder), mode=mode, id=stable_run_id(self.out.uri), resume="allow",
                settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
            )
            self.run.summary["out"] = self.out.uri
            log.info("W&B run %s (%s) in %s", self.run.id, mode, self.run.dir)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_media(self, grid: Image.Image, gif: bytes, step: int) -> None:
        from .viz import png_bytes

        media = self.out.join("media")
        storage.write_bytes(media.join(f"samples_{step:07d}.png"), png_bytes(grid))
        storage.write_bytes(media.join(f"drawing_{step:07d}.gif"), gif)
        if self.run is not None:
            import wandb

            self.run.log({"samples": wandb.Image(grid, caption=f"step {step}"),
                          "drawing": wandb.Video(io.BytesIO(gif), format="gif", caption=f"step {step}")}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            for k, v in values.items():
                self.run.summary[k] = v

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
