"""`draw-service export`: a trained checkpoint as a shippable model folder.

    <out>/checkpoint.pt   weights only (fp32), the architecture and image shape, metrics and training config
    <out>/model.json      its card: what it scores, on what data, the hardware and time it took, and the
                          `draw-service train` command that trains it again

`draw-service evaluate`, `sample` and `serve` take the folder as they take any checkpoint.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from . import checkpoint, storage
from .settings import Settings, option, require, to_argv

CARD = "model.json"


@dataclass(frozen=True)
class ExportConfig(Settings):
    component = "export"

    checkpoint: str | None = option(None, required=True, help="the trained checkpoint (folder or file, local or "
                                                               "s3://)")
    out: str | None = option(None, required=True, help="the model folder to write (local or s3://)")
    note: str | None = option(None, help="a line for the card: where and why it was trained")


def card(state: dict[str, Any], source: str, note: str | None = None, name: str = "model") -> dict[str, Any]:
    """The model card of a checkpoint: everything a newcomer asks of a shipped model. Its `train_command`
    trains it again from a fresh clone: the run's folder becomes `runs/<name>` (the folder it was trained in
    may be a machine's temporary one)."""
    from .train.config import TrainConfig

    train = state.get("train_config") or {}
    try:
        again = TrainConfig.from_dict(train).replace(out=f"runs/{name}", resume=False)
        command = "draw-service train " + shlex.join(to_argv(again))
    except (ValueError, TypeError) as err:  # a checkpoint of an older build: say so rather than guess
        command = f"(not reconstructible: {err})"
    metrics = state.get("metrics") or {}
    keep = ("nll_bound", "bits_per_dim", "eval_recon", "eval_kl", "eval_split", "epoch", "train_minutes",
            "images_per_s", "precision")
    return {
        "model": state["model_config"], "image_shape": state["image_shape"], "step": state["step"],
        "data": train.get("data"), "metrics": {k: v for k, v in metrics.items() if k in keep or k.startswith("iwae")},
        "hardware": state.get("hardware"), "train_command": command, "exported_from": source,
        **({"note": note} if note else {}),
    }


def export_command(cfg: ExportConfig) -> dict[str, Any]:
    require(cfg, "checkpoint", "out")
    state = checkpoint.load(cfg.checkpoint)
    checkpoint.model_from_state(state, cfg.checkpoint)  # refuse to ship weights that do not load
    out = storage.resolve(cfg.out)
    checkpoint.export_weights(state, out)
    info = card(state, cfg.checkpoint, cfg.note, name=out.name)
    storage.write_bytes(out.join(CARD), (json.dumps(info, indent=2) + "\n").encode())
    size = len(storage.read_bytes(out.join(checkpoint.FILENAME)))
    return {"model": out.uri, "checkpoint_bytes": size, **{k: info[k] for k in ("metrics", "train_command")}}
