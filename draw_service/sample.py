"""`draw-service sample`: a grid of new images from a checkpoint, and the animation of drawing them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .device import PRECISIONS
from .limits import MAX_ANIMATED, MAX_IMAGES
from .settings import Settings, option, require


@dataclass(frozen=True)
class SampleConfig(Settings):
    component = "sample"

    checkpoint: str | None = option(None, required=True, help="checkpoint folder or file, local or s3://")
    n: int = option(64, min=1, max=MAX_IMAGES, flag="-n",
                    help=f"how many images (at most {MAX_IMAGES}, {MAX_ANIMATED} with --gif)")
    out: str = option("samples.png", help="the grid picture (.png; any picture format Pillow writes)")
    gif: str | None = option(None, help="also write the drawing animation here (.gif)")
    # A GIF's size grows with images x frames: all 64 of a grid over the paper's 64 steps make 6 to 12 MB.
    gif_images: int = option(16, min=1, max=MAX_ANIMATED, help="with --gif: animate the grid's first N images")
    gif_frames: int = option(32, min=2, max=256, help="with --gif: at most N frames (every k-th step, and the last)")
    seed: int = option(0, min=0, help="same seed, same images (here and from the HTTP service)")
    temperature: float = option(1.0, above=0, help="scales the prior's standard deviation")
    device: str = option("auto", choices=("auto", "cpu", "cuda"), help="where to decode")
    precision: str = option("auto", choices=PRECISIONS, help="the decoder's: auto is bf16 where the hardware computes "
                                                             "it natively (the images then differ from fp32's by a "
                                                             "level or so on some pixels), else fp32")

    def check(self) -> None:
        if self.gif is not None and self.n > MAX_ANIMATED:
            raise ValueError(f"n must be <= {MAX_ANIMATED} with --gif (every image's canvas at every step), "
                             f"got {self.n}")


def check_output_file(path: str, what: str, suffixes: tuple[str, ...]) -> None:
    """A file about to be written, checked before any work: not a folder, in a folder that exists (none is
    made for it: a typo would leave a tree behind), and with a suffix its format is written under."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name in it, e.g. {p / ('samples' + suffixes[0])}")
    if p.suffix.lower() not in suffixes:
        shown = ", ".join(suffixes[:4]) + (", ..." if len(suffixes) > 4 else "")
        raise ValueError(f"{what} {path} must end in {shown} (the format is chosen by the name)")
    if not p.parent.is_dir():
        raise ValueError(f"{what} {path}: the folder {p.parent} does not exist")


def sample_command(cfg: SampleConfig) -> dict[str, Any]:
    from PIL import Image

    from . import checkpoint
    from .device import autocast, pick_device, pick_precision
    from .viz import drawing_frames, gif_bytes, grid_image, thinned

    require(cfg, "checkpoint")
    writable = Image.registered_extensions()  # suffix -> format, for what Pillow can save
    check_output_file(cfg.out, "--out", (".png", *sorted(s for s, f in writable.items()
                                                           if f in Image.SAVE and s != ".png")))
    if cfg.gif:
        check_output_file(cfg.gif, "--gif", (".gif",))
    device = pick_device(cfg.device)
    precision, _ = pick_precision(cfg.precision, device)
    model, _ = checkpoint.load_model(cfg.checkpoint, device)
    eps = model.prior_latents(cfg.n, cfg.seed, cfg.temperature)
    with autocast(device, precision):
        images, record = model.decode(eps.to(device), record=cfg.gif is not None)
    grid_image(images).save(cfg.out)
    written = {"grid": cfg.out, "seed": cfg.seed, "precision": precision}
    if cfg.gif:
        write_n = model.config.write_n if model.config.attention else None
        Path(cfg.gif).write_bytes(gif_bytes(drawing_frames(thinned(record, cfg.gif_images, cfg.gif_frames), write_n)))
        written["gif"] = cfg.gif
    return written
