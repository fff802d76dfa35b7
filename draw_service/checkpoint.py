"""The one checkpoint format, read by training resume, evaluate, sample and serve.

A checkpoint is a folder (Ray Train's unit) holding `checkpoint.pt`: a plain dict of tensors and
Python values, so `torch.load(..., weights_only=True)` reads it and a checkpoint alone rebuilds its
model. A URI may name the folder or the file, locally or on S3.
"""

from __future__ import annotations

import io
import re
from typing import Any

import torch

from . import storage
from .model import DRAW, DRAWConfig

FORMAT = "draw-service/checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt or not ours; the message names it."""


def build_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, step: int,
                train_config: dict[str, Any], metrics: dict[str, float] | None = None) -> dict[str, Any]:
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "train_config": train_config,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": step,
        "metrics": dict(metrics or {}),
    }


def to_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save(state: dict[str, Any], folder_uri: str | storage.Location) -> str:
    """Write `state` as `<folder>/checkpoint.pt`; returns the folder's URI."""
    loc = storage.resolve(folder_uri)
    storage.write_bytes(loc.join(FILENAME), to_bytes(state))
    return loc.uri


_FOLDER = re.compile(r"^checkpoint_\d+$")


def folder_name(step: int) -> str:
    return f"checkpoint_{step:07d}"


def list_folders(parent_uri: str | storage.Location) -> list[str]:
    """Names of the checkpoint folders (`checkpoint_<step>`) directly under a run folder, oldest first."""
    return [n for n in storage.list_dir(parent_uri) if _FOLDER.match(n)]


def latest(parent_uri: str | storage.Location) -> str | None:
    """The URI of the newest complete checkpoint folder under a run folder, or None."""
    parent = storage.resolve(parent_uri)
    for name in reversed(list_folders(parent)):
        if storage.exists(parent.join(name, FILENAME)):
            return parent.join(name).uri
    return None


def checkpoint_file(uri: str | storage.Location) -> storage.Location:
    loc = storage.resolve(uri)
    if loc.path.endswith(".pt") or (storage.exists(loc) and not storage.is_dir(loc)):
        return loc
    return loc.join(FILENAME)


def load(uri: str | storage.Location) -> dict[str, Any]:
    """Read and validate a checkpoint (folder or file, local or S3)."""
    loc = checkpoint_file(uri)
    try:
        data = storage.read_bytes(loc)
    except FileNotFoundError as err:
        raise CheckpointError(f"no checkpoint at {loc.uri}") from err
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{loc.uri} is corrupt or not a PyTorch checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200]})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        keys = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{loc.uri} is not a draw-service checkpoint (found {keys}); "
                              f"checkpoints are written by `draw-service train`")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{loc.uri} has checkpoint version {state.get('version')}, this build reads {VERSION}")
    return state


def model_from_state(state: dict[str, Any], uri: str = "checkpoint") -> DRAW:
    try:
        model = DRAW(DRAWConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{uri}: the weights do not fit the model it describes ({err})") from err
    return model.eval()


def load_model(uri: str, device: str | torch.device = "cpu") -> tuple[DRAW, dict[str, Any]]:
    state = load(uri)
    return model_from_state(state, str(uri)).to(device), state
