"""One run's folder in storage, laid out the same for every kind of run (local, Ray Train, a search's trial):

    <out>/checkpoint_<step>/checkpoint.pt    written by the local loop, or persisted there by Ray Train
    <out>/metrics/<step>.json                what each report said
    <out>/media/samples_<step>.png           sample grids and drawing animations
    <out>/media/drawing_<step>.gif
    <out>/wandb/                             W&B offline run files

`--out` (a folder, file://... or s3://bucket/prefix) becomes a `RunDir` in this one place, and everything
that writes or reads a run asks it where things go, so a run started locally continues on Ray and back.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from pathlib import Path

from . import storage

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")


class RunDir:
    def __init__(self, out: str | os.PathLike | storage.Location):
        self.loc = storage.resolve(out)

    def __repr__(self) -> str:
        return f"RunDir({self.uri!r})"

    @property
    def uri(self) -> str:
        return self.loc.uri

    @property
    def name(self) -> str:
        """The run's name: the last part of its location (Ray Train's run name too)."""
        return self.loc.name

    def child(self, *parts: str) -> RunDir:
        return RunDir(self.loc.join(*parts))

    def uri_of(self, fs_path: str) -> str:
        """A path on this run's filesystem (as Ray hands them back) as a URI the loaders take."""
        return f"s3://{fs_path}" if self.loc.is_s3 else fs_path

    # --- checkpoints ----------------------------------------------------------------------------
    @staticmethod
    def checkpoint_name(step: int) -> str:
        return f"checkpoint_{step:07d}"

    def checkpoint(self, step: int) -> storage.Location:
        return self.loc.join(self.checkpoint_name(step))

    def checkpoints(self) -> list[tuple[int, storage.Location]]:
        """Every checkpoint folder with its step, oldest first (by step: names stop sorting as text past
        step 9,999,999)."""
        found = [(int(m.group(1)), self.loc.join(name))
                 for name in storage.list_dir(self.loc) if (m := _CHECKPOINT.match(name))]
        return sorted(found, key=lambda item: item[0])

    # --- everything else a run writes -------------------------------------------------------------
    @property
    def metrics(self) -> storage.Location:
        return self.loc.join("metrics")

    def metrics_file(self, step: int) -> storage.Location:
        return self.metrics.join(f"{step:07d}.json")

    def write_metrics(self, metrics: dict) -> None:
        """A report's metrics, as `metrics/<step>.json`."""
        storage.write_bytes(self.metrics_file(int(metrics["step"])), json.dumps(metrics).encode())

    def reported_bound(self, step: int) -> float | None:
        """The evaluated bound reported at `step` (what checkpoint retention ranks by), or None."""
        try:
            return json.loads(storage.read_bytes(self.metrics_file(step))).get("nll_bound")
        except (FileNotFoundError, ValueError):
            return None

    def remove_partial_files(self) -> None:
        """Temporary files that killed writes left in the checkpoint folders (local runs; S3 writes are atomic)."""
        if self.loc.is_s3:
            return
        for _, folder in self.checkpoints():
            for name in storage.list_dir(folder):
                if storage.TMP_MARK in name:
                    log.warning("removing %s, left by an interrupted write", folder.join(name).uri)
                    storage.delete(folder.join(name))

    @property
    def media(self) -> storage.Location:
        return self.loc.join("media")

    @property
    def wandb(self) -> storage.Location:
        """Where the run's W&B offline files live for good."""
        return self.loc.join("wandb")

    def wandb_local_dir(self) -> Path:
        """A local folder for W&B to write into: the run's own for a local run; for a run on S3 a staging
        folder on this machine, whose files are copied to `wandb` (`tracking.py` does it)."""
        if not self.loc.is_s3:
            return Path(self.loc.path)
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "draw-service" / "wandb-staging"
        return base / self.loc.path.replace("/", "_")

    # --- Ray Train --------------------------------------------------------------------------------
    def ray_storage(self) -> tuple[str, object, str]:
        """(storage_path, storage_filesystem, name) for Ray's RunConfig: Ray then persists the run's
        checkpoints as `<out>/checkpoint_<step>`, exactly where a local run writes them."""
        parent = posixpath.dirname(self.loc.path.rstrip("/"))
        return parent, self.loc.fs, self.name
