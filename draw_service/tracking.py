"""Experiment tracking: Weights & Biases (offline files unless told otherwise) and local pictures.

Only rank 0 of a run tracks. Without `WANDB_MODE` set, W&B runs offline and writes its run folder
under `<out>/wandb` (`run_dir.py`); `wandb sync <folder>` uploads it later. The API key is never read,
printed or stored here: wandb finds it itself when online. The same pictures W&B gets (sample grids,
drawing GIFs) are written to `<out>/media/` either way.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import storage
from .run_dir import RunDir
from .settings import Settings, option

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


@dataclass
class TrackingConfig(Settings):
    what = "tracking"

    wandb: bool = option(True, help="log to Weights & Biases, offline files unless WANDB_MODE says otherwise")
    wandb_project: str = option("draw-service", help="the W&B project")
    group: str | None = option(None, cli=False, help="a W&B group: a search puts its trials in one")
    run_name: str | None = option(None, cli=False, help="the W&B run's name (default: the run folder's name)")
    media_every: int | None = option(None, min=1, help="steps between sample pictures (default: each evaluation)")
    log_every: int = option(50, min=1, help="steps between training-loss points (W&B and the progress bar)")
    media_samples: int = option(64, min=1, cli=False, help="images in each sample grid")


def stable_run_id(out_uri: str) -> str:
    """The same output location gives the same W&B run id, so a resumed run continues its W&B run."""
    return "draw-" + hashlib.sha1(out_uri.encode()).hexdigest()[:10]


class Tracker:
    """Metrics and pictures of one run, to W&B and to `<out>/media`."""

    def __init__(self, cfg: TrackingConfig, run_config: dict[str, Any], run: RunDir):
        self.cfg = cfg
        self.out = run
        self.run = None
        if cfg.wandb:
            import wandb

            mode = os.environ.get("WANDB_MODE", "offline")
            folder = run.wandb_local_dir()
            folder.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=cfg.wandb_project, group=cfg.group, name=cfg.run_name or run.name, config=run_config,
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

        media = self.out.media
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
