"""Where the training loop runs, as the loop sees it: its *session*.

The loop asks its session for its rank and world size, its device, the run's folder (`RunDir`), the
checkpoint to resume from, and a place to report metrics and checkpoints. `LocalSession` answers for
a run in this process; `RaySession` (beside the Ray launcher, `on_ray.py`) for one worker of a Ray
Train run. Both keep the same run layout, so a run continues from one to the other.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch

from .. import checkpoint, storage
from ..device import pick_device
from ..run_dir import RunDir

log = logging.getLogger(__name__)


class LocalSession:
    """One process, no Ray: checkpoints go to `<out>/checkpoint_<step>`; the newest and the `keep` best
    evaluated are kept (`checkpoint.retained`)."""

    rank, world_size = 0, 1

    def __init__(self, out: str, device: str = "auto", resume: bool = False, keep: int = 3):
        self.run = RunDir(storage.check_access(out))
        self.device = pick_device(device)
        self.resume, self.keep = resume, keep
        self.last_checkpoint: str | None = None

    def restore(self) -> dict[str, Any] | None:
        latest = checkpoint.latest(self.run)
        if latest is None:
            if self.resume:
                log.warning("--resume: no checkpoint under %s yet, starting from scratch", self.run.uri)
            return None
        if not self.resume:
            raise FileExistsError(f"{self.run.uri} already holds a run (latest checkpoint {latest}); pass --resume "
                                  f"to continue it or choose another output folder")
        self.run.remove_partial_files()
        state, uri = checkpoint.load_latest(self.run)
        log.info("resuming from %s", uri)
        return state

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        storage.write_bytes(self.run.metrics_file(int(metrics["step"])), json.dumps(metrics).encode())
        if state is None:
            return
        folder = self.run.checkpoint(state["step"])
        checkpoint.save(state, folder)
        self.last_checkpoint = folder.uri
        found = self.run.checkpoints()
        keep = checkpoint.retained([(step, self.run.reported_bound(step)) for step, _ in found], self.keep)
        for step, old in found:
            if step not in keep:
                storage.delete(old)
