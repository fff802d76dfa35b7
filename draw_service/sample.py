"""`draw-service sample`: a grid of new images from a checkpoint, and the animation of drawing them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import Settings, option, require


@dataclass(frozen=True)
class SampleConfig(Settings):
    component = "sample"

    checkpoint: str | None = option(None, required=True, help="checkpoint folder or file, local or s3://")
    n: int = option(64, min=1, flag="-n", help="how many images")
    out: str = option("samples.png", help="the PNG grid")
    gif: str | None = option(None, help="also write the drawing animation here")
    seed: int = option(0, min=0, help="same seed, same images (here and from the HTTP service)")
    temperature: float = option(1.0, above=0, help="scales the prior's standard deviation")
    device: str = option("auto", choices=("auto", "cpu", "cuda"), help="where to decode")


def sample_command(cfg: SampleConfig) -> dict[str, Any]:
    from . import checkpoint
    from .device import pick_device
    from .viz import drawing_frames, gif_bytes, grid_image

    require(cfg, "checkpoint")
    model, _ = checkpoint.load_model(cfg.checkpoint, pick_device(cfg.device))
    eps = model.prior_latents(cfg.n, cfg.seed, cfg.temperature)
    images, record = model.decode(eps.to(model.dec_proj.weight.device), record=cfg.gif is not None)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    grid_image(images).save(cfg.out)
    written = {"grid": cfg.out, "seed": cfg.seed}
    if cfg.gif:
        Path(cfg.gif).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.gif).write_bytes(gif_bytes(drawing_frames(record, model.config.write_n if model.config.attention
                                                           else None)))
        written["gif"] = cfg.gif
    return written
