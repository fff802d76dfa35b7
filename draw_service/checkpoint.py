"""The one checkpoint format, read by training resume, evaluate, sample and serve.

A checkpoint is a folder (Ray Train's unit) holding `checkpoint.pt`: a plain dict of tensors and
Python values, so `torch.load(..., weights_only=True)` reads it and a checkpoint alone rebuilds its
model: the architecture (`model_config`), the image shape it draws, the weights, and — unless it is a
weights-only export — the optimiser state, the step and the training configuration. A URI may name
the folder or the file, locally or on S3.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import torch

from . import storage
from .errors import UserError
from .model import DRAW, DRAWConfig, ImageShape
from .run_dir import RunDir

log = logging.getLogger(__name__)

FORMAT = "draw-service/checkpoint"
VERSION = 2  # 2: the architecture and the image shape are stored apart (1 kept them in one dict)
FILENAME = "checkpoint.pt"


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt or not ours; the message names it."""


def build_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, step: int,
                train_config: dict[str, Any], metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    from .device import describe

    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    return {
        "hardware": describe(next(model.parameters()).device),
        "format": FORMAT,
        "version": VERSION,
        "model_config": model.config.to_dict(),
        "image_shape": list(model.image_shape),
        "train_config": train_config,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": _portable(optimizer.state_dict()) if optimizer is not None else None,
        "step": step,
        "metrics": dict(metrics or {}),
    }


def _portable(optimizer_state: dict[str, Any]) -> dict[str, Any]:
    """Learning rates as plain numbers (a CUDA-graph step keeps them as GPU tensors), so any device resumes."""
    groups = [{**g, "lr": float(g["lr"])} for g in optimizer_state["param_groups"]]
    return {**optimizer_state, "param_groups": groups}


def to_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save(state: dict[str, Any], folder_uri: str | storage.Location) -> str:
    """Write `state` as `<folder>/checkpoint.pt`; returns the folder's URI."""
    loc = storage.resolve(folder_uri)
    storage.write_bytes(loc.join(FILENAME), to_bytes(state))
    return loc.uri


def complete_folders(run: RunDir) -> list[storage.Location]:
    """The run's checkpoint folders that hold a checkpoint file, newest first."""
    return [folder for _, folder in reversed(run.checkpoints()) if storage.exists(folder.join(FILENAME))]


def latest(run: RunDir) -> str | None:
    """The URI of the run's newest complete checkpoint folder, or None."""
    found = complete_folders(run)
    return found[0].uri if found else None


def load_latest(run: RunDir) -> tuple[dict[str, Any], str] | None:
    """The run's newest checkpoint that can be read, and its URI; None when the run has none.

    An unreadable newest checkpoint (a kill mid-write, a truncated upload, a 0-byte file) is passed over
    with a warning for the one before it: a run never restarts from zero while a good checkpoint exists,
    and is refused, not restarted, when none of its checkpoints can be read."""
    found = complete_folders(run)
    problems = []
    for folder in found:
        try:
            state = load(folder)
        except CheckpointError as err:
            log.warning("passing over an unreadable checkpoint: %s", err)
            problems.append(str(err))
            continue
        if problems:
            log.warning("resuming from %s, the newest checkpoint that can be read", folder.uri)
        return state, folder.uri
    if problems:
        raise CheckpointError(f"none of the {len(found)} checkpoints of {run.uri} can be read (newest: "
                              f"{problems[0]}); move them away to start afresh")
    return None


def retained(scored: list[tuple[int, float | None]], keep: int) -> set[int]:
    """The checkpoints (steps) to keep of `scored` (step, evaluated bound or None): the newest one and the
    `keep` best evaluated ones, unevaluated ones counting as worst, newer before older. Ray's retention
    (`num_to_keep` with a score that is +inf until evaluated) keeps the same ones on Ray."""
    if not scored:
        return set()
    ranked = sorted(scored, key=lambda item: (item[1] is None, item[1] if item[1] is not None else 0, -item[0]))
    return {max(step for step, _ in scored)} | {step for step, _ in ranked[:keep]}


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
        if loc.path.endswith("/" + FILENAME) and not str(uri).endswith(".pt"):
            run = RunDir(storage.resolve(uri))  # a run's folder stands for its newest checkpoint
            found = load_latest(run) if storage.is_dir(run.loc) else None
            if found is not None:
                log.info("%s is a run folder: using its newest checkpoint, %s", run.uri, found[1])
                return found[0]
        raise CheckpointError(f"no checkpoint at {loc.uri}, nor a run folder with checkpoint_* folders in "
                              f"{storage.resolve(uri).uri}") from err
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{loc.uri} is corrupt or not a PyTorch checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200] if str(err) else 'no detail'})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        keys = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{loc.uri} is not a draw-service checkpoint (found {keys}); "
                              f"checkpoints are written by `draw-service train`")
    if state.get("version") == 1:
        state = _from_version_1(state)
    if state.get("version") != VERSION:
        raise CheckpointError(f"{loc.uri} has checkpoint version {state.get('version')}, this build reads {VERSION}")
    missing = [k for k in ("model_config", "image_shape", "model", "step") if not state.get(k) and state.get(k) != 0]
    if missing:
        raise CheckpointError(f"{loc.uri} is incomplete: it has no {', '.join(missing)}")
    return state


def _from_version_1(state: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept the image shape inside the model's configuration and had only the Bernoulli loss."""
    config = dict(state.get("model_config") or {})
    shape = [config.pop(k, None) for k in ("channels", "height", "width")]
    return {**state, "version": 2, "model_config": {**config, "likelihood": "bernoulli"}, "image_shape": shape}


def model_config(state: dict[str, Any], uri: str = "checkpoint") -> tuple[DRAWConfig, ImageShape]:
    """The architecture and image shape a checkpoint describes."""
    try:
        return DRAWConfig.from_dict(state["model_config"]), ImageShape(*state["image_shape"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{uri}: its model description is incomplete or invalid ({err})") from err


def model_from_state(state: dict[str, Any], uri: str = "checkpoint") -> DRAW:
    config, shape = model_config(state, uri)
    try:
        model = DRAW(config, shape)
        model.load_state_dict(state["model"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{uri}: the weights do not fit the model it describes ({err})") from err
    return model.eval()


def load_model(uri: str, device: str | torch.device = "cpu") -> tuple[DRAW, dict[str, Any]]:
    state = load(uri)
    return model_from_state(state, str(uri)).to(device), state


def check_resumable(state: dict[str, Any], config: DRAWConfig, shape: ImageShape, dataset: str) -> None:
    """A run resumes only the model it was training, on images of the shape it was drawing."""
    saved_config, saved_shape = model_config(state)
    if tuple(saved_shape) != tuple(shape):
        raise ValueError(f"dataset {dataset} has images of shape {tuple(shape)} (C, H, W) but the run's "
                         f"checkpoint draws {tuple(saved_shape)}: use the run's own dataset or another output "
                         f"location")
    if saved_config != config:
        now = config.to_dict()
        changed = {k: (v, now[k]) for k, v in saved_config.to_dict().items() if now[k] != v}
        raise ValueError(f"the run's checkpoint holds a different model (checkpoint vs now: {changed}); "
                         f"resume with the same model options or use another output location")


def export_weights(state: dict[str, Any], folder_uri: str | storage.Location) -> str:
    """A weights-only copy of a checkpoint: fp32 weights, the model's description, its metrics and how it
    was trained, no optimiser state (a few MB for the paper's models); every loader takes it."""
    slim = {**state, "optimizer": None,
            "model": {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}}
    return save(slim, folder_uri)
