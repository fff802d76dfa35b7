"""Where the training loop runs: in this process, or as one worker of a Ray Train run.

The loop asks its session for four things: its rank and world size, the device, the checkpoint to
resume from, and a place to report metrics and checkpoints. `LocalSession` answers from an output
folder; `RaySession` answers through `ray.train` (Ray persists the checkpoints to the run's storage).
"""

from __future__ import annotations

import json
import logging
import tempfile
from typing import Any

import torch

from .. import checkpoint, storage
from ..device import pick_device

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"


class LocalSession:
    """One process, no Ray: checkpoints go to `<out>/checkpoints/checkpoint_<step>`."""

    rank, world_size = 0, 1

    def __init__(self, out_uri: str, device: str = "auto", resume: bool = False, keep: int = 3):
        self.out = storage.check_access(out_uri)
        self.device = pick_device(device)
        self.resume, self.keep = resume, keep
        self.last_checkpoint: str | None = None

    def restore(self) -> dict[str, Any] | None:
        latest = checkpoint.latest(self.out.join(CHECKPOINTS))
        if latest is None:
            if self.resume:
                log.warning("--resume: no checkpoint under %s yet, starting from scratch", self.out.uri)
            return None
        if not self.resume:
            raise FileExistsError(f"{self.out.uri} already holds a run (latest checkpoint {latest}); pass --resume "
                                  f"to continue it or choose another output folder")
        log.info("resuming from %s", latest)
        return checkpoint.load(latest)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        storage.write_bytes(self.out.join("metrics", f"{int(metrics['step']):07d}.json"),
                            json.dumps(metrics).encode())
        if state is None:
            return
        folder = self.out.join(CHECKPOINTS, checkpoint.folder_name(state["step"]))
        checkpoint.save(state, folder)
        self.last_checkpoint = folder.uri
        names = checkpoint.list_folders(self.out.join(CHECKPOINTS))
        for old in names[: max(0, len(names) - self.keep)]:
            storage.delete(self.out.join(CHECKPOINTS, old))


class RaySession:
    """One worker of a Ray Train run (DDP: gloo on CPUs, NCCL on GPUs, chosen by Ray)."""

    def __init__(self, out_uri: str):
        import ray.train
        import ray.train.torch

        self.out = storage.resolve(out_uri)  # the run's folder in Ray's storage: <storage>/<name>
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.last_checkpoint: str | None = None

    def restore(self) -> dict[str, Any] | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as folder:
            log.info("worker %d resuming from %s", self.rank, ckpt.path)
            return checkpoint.load(folder)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)  # to the device, and DDP when there are several workers

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        import ray.train

        if state is None or self.rank != 0:
            ray.train.report(metrics)  # every worker reports, or the others would wait for rank 0 forever
            return
        name = checkpoint.folder_name(state["step"])
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint.save(state, tmp)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)
        self.last_checkpoint = self.out.join(name).uri
