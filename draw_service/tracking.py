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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import storage, wandb_file
from .run_dir import RunDir
from .settings import Settings, option

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackingConfig(Settings):
    component = "tracking"

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
    """Metrics and pictures of one run, to W&B and to `<out>/media`.

    W&B writes its offline file every second (its default is 15 s), so a run that is killed — a search
    trial that ASHA stops, a preempted pod — still leaves every report it made. For a run on S3 the
    files are written on this machine and copied into `<out>/wandb/` after every report (once W&B has
    written it) and at the end, so they outlive the pod."""

    def __init__(self, cfg: TrackingConfig, run_config: dict[str, Any], run_dir: RunDir):
        self.cfg = cfg
        self.run_dir = run_dir
        self.wandb_run = None
        self.folder = run_dir.wandb_local_dir()
        self._copied: dict[str, tuple[int, int]] = {}  # W&B files already in storage: (size, mtime_ns)
        if cfg.wandb:
            import wandb

            # Online when a key is there (a Kubernetes Secret, `wandb login`), offline files otherwise.
            mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
            self.folder.mkdir(parents=True, exist_ok=True)
            self.wandb_run = wandb.init(
                project=cfg.wandb_project, group=cfg.group, name=cfg.run_name or run_dir.name, config=run_config,
                dir=str(self.folder), mode=mode, id=stable_run_id(self.run_dir.uri), resume="allow",
                settings=wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                        x_transaction_log_flush_interval=1.0),
            )
            self.wandb_run.summary["out"] = self.run_dir.uri
            log.info("W&B run %s (%s) in %s", self.wandb_run.id, mode, self.wandb_run.dir)

    def log(self, metrics: dict[str, Any], step: int, commit: bool = True) -> None:
        """Values at `step`; `commit=False` when more for the same step follows (W&B drops a second commit)."""
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step, commit=commit)

    def log_report(self, metrics: dict[str, Any], step: int, media: tuple[Image.Image, bytes] | None) -> None:
        """A report: its metrics and, when given, a sample grid and a drawing GIF (also written to `<out>/media`)."""
        values = dict(metrics)
        if media is not None:
            from .viz import png_bytes

            grid, gif = media
            storage.write_bytes(self.run_dir.media.join(f"samples_{step:07d}.png"), png_bytes(grid))
            storage.write_bytes(self.run_dir.media.join(f"drawing_{step:07d}.gif"), gif)
            if self.wandb_run is not None:
                import wandb

                values.update({"samples": wandb.Image(grid, caption=f"step {step}"),
                               "drawing": wandb.Video(io.BytesIO(gif), format="gif", caption=f"step {step}")})
        self.log(values, step)
        self.persist(wait_for_step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            for k, v in values.items():
                self.wandb_run.summary[k] = v

    def persist(self, wait_for_step: int | None = None, wait_s: float = 30.0) -> None:
        """A run on S3: copy its W&B files that changed from this machine into `<out>/wandb/`.

        After a report, first wait (up to `wait_s`) until W&B has put that step's row into its transaction
        log: a trial that ASHA stops next may never get another chance to copy it. The file growing is not
        enough: on a busy machine it grows by the run's earlier records first."""
        if self.wandb_run is None or not self.run_dir.loc.is_s3:
            return
        if wait_for_step is not None:
            self._wait_for_wandb(lambda path: wait_for_step in wandb_file.history_steps(path),
                                 f"step {wait_for_step}", wait_s)
        self._copy_wandb_files()

    def _wait_for_wandb(self, written, what: str, wait_s: float) -> None:
        """Wait until `written(transaction log)`; after `wait_s`, say so and go on with what W&B has."""
        log_file = Path(self.wandb_run.settings.sync_file)
        if not wandb_file.wait_until(log_file, written, wait_s):
            log.warning("W&B has not written %s into %s after %.0f s; copying what it has", what, log_file, wait_s)

    def _copy_wandb_files(self) -> None:
        written = self.folder / "wandb"  # W&B writes under <dir>/wandb/: <out>/wandb/ as for a local run
        for path in written.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            rel = path.relative_to(written).as_posix()
            seen = (path.stat().st_size, path.stat().st_mtime_ns)
            if self._copied.get(rel) == seen:
                continue  # pictures and logs of earlier reports are not uploaded again
            try:
                storage.write_bytes(self.run_dir.wandb.join(rel), path.read_bytes())
                self._copied[rel] = seen
            except (OSError, storage.StorageError) as err:  # a file W&B is rewriting: the next copy has it
                log.debug("W&B file %s not copied this time: %s", rel, err)

    def finish(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            if self.run_dir.loc.is_s3:
                # finish() can return before W&B has written the run's last records (its summary, its end)
                self._wait_for_wandb(wandb_file.ended, "the run's end", 30.0)
                self._copy_wandb_files()
            self.wandb_run = None
