"""Where the training loop runs, as the loop sees it: its *session* (the `Session` protocol).

The loop asks its session for its rank and world size, its device, the run's folder (`RunDir`), the
checkpoint to resume from, and a place to report metrics and checkpoints. `LocalSession` answers for
a run in this process; `RaySession` (beside the Ray launcher, `on_ray.py`) for one worker of a Ray
Train run. Both keep the same run layout, so a run continues from one to the other.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Protocol

import torch

from .. import checkpoint, storage
from ..device import pick_device
from ..run_dir import RunDir

log = logging.getLogger(__name__)


class Session(Protocol):
    """What `train_loop` needs from where it runs."""

    rank: int  # this worker's place in the DDP group, 0 for a local run
    world_size: int
    device: torch.device
    run_dir: RunDir  # the run's folder
    node: str  # where this worker runs (a Ray node ID, or the host's name)
    last_checkpoint: str | None  # the URI of the last checkpoint reported, once there is one

    def restore(self) -> dict[str, Any] | None:
        """The checkpoint state to continue from, or None for a fresh run."""

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on this worker's device, wrapped for DDP when there are several workers."""

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        """Record a report's metrics and, when `state` is given (rank 0), its checkpoint."""

    def preempted(self) -> bool:
        """Whether a node of this run is about to be taken away (every worker gets the same answer)."""


class LocalSession:
    """One process, no Ray: checkpoints go to `<out>/checkpoint_<step>`; the newest and the `keep` best
    evaluated are kept (`checkpoint.retained`)."""

    rank, world_size = 0, 1

    def __init__(self, out: str, device: str = "auto", resume: bool = False, keep: int = 3):
        self.run_dir = RunDir(storage.check_access(out))
        self.device = pick_device(device)
        self.resume, self.keep = resume, keep
        self.node = socket.gethostname()
        self.last_checkpoint: str | None = None

    def restore(self) -> dict[str, Any] | None:
        latest = checkpoint.latest(self.run_dir)
        if latest is None:
            if self.resume:
                log.warning("--resume: no checkpoint under %s yet, starting from scratch", self.run_dir.uri)
            return None
        if not self.resume:
            raise FileExistsError(f"{self.run_dir.uri} already holds a run (latest checkpoint {latest}); pass --resume "
                                  f"to continue it or choose another output folder")
        self.run_dir.remove_partial_files()
        state, uri = checkpoint.load_latest(self.run_dir)
        log.info("resuming from %s", uri)
        return state

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def preempted(self) -> bool:
        return False  # one process: nothing tells it in advance

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        self.run_dir.write_metrics(metrics)
        if state is None:
            return
        folder = self.run_dir.checkpoint(state["step"])
        checkpoint.save(state, folder)
        self.last_checkpoint = folder.uri
        found = self.run_dir.checkpoints()
        keep = checkpoint.retained([(step, self.run_dir.reported_bound(step)) for step, _ in found], self.keep)
        for step, old in found:
            if step not in keep:
                storage.delete(old)
