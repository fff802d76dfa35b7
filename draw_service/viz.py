"""Pictures of the model: sample grids and animations of the canvas being drawn, with its windows on top."""

from __future__ import annotations

import dataclasses
import io
import math

import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid

from .model import DrawingRecord

PADDING = 2
WINDOW_COLOUR = (255, 40, 40)  # the write window: red, as in the paper
READ_COLOUR = (40, 220, 40)  # the read window: green


def _nrow(n: int) -> int:
    return max(1, math.ceil(math.sqrt(n)))


def grid_image(images: Tensor, nrow: int | None = None, scale: int = 2) -> Image.Image:
    """`(n, C, H, W)` in [0, 1] → one RGB picture, images in rows of `nrow`, upscaled by `scale`."""
    images = images.detach().float().cpu().clamp(0, 1)
    grid = make_grid(images, nrow=nrow or _nrow(len(images)), padding=PADDING, pad_value=0.35)
    im = to_pil_image(grid).convert("RGB")
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale != 1 else im


def drawing_frames(record: DrawingRecord, write_n: int | None, nrow: int | None = None, scale: int = 3,
                   read_n: int | None = None) -> list[Image.Image]:
    """One picture per step t: the canvases σ(c_t), each image's write window as a red box and, when the
    record has them and `read_n` is given, its read window as a green one (the paper's figure 3).

    A box spans its grid's N filter centres plus half a stride each side: the patch the decoder paints
    (or the encoder reads) at step t. Attention-free models get no boxes.
    """
    T, n, C, H, W = record.canvases.shape
    nrow = nrow or _nrow(n)
    windows = [(record.write_windows, write_n, WINDOW_COLOUR), (record.read_windows, read_n, READ_COLOUR)]
    windows = [(win, N, colour) for win, N, colour in windows if win is not None and N is not None]
    frames = []
    for t in range(T):
        im = grid_image(record.canvases[t], nrow, scale)
        draw = ImageDraw.Draw(im)
        for i in range(n):
            row, col = divmod(i, nrow)
            ox, oy = PADDING + col * (W + PADDING), PADDING + row * (H + PADDING)
            for win, N, colour in windows:
                half = N / 2 * float(win.delta[t, i])
                # Pixel coordinates run from 1; the picture's from 0.
                x0, x1 = float(win.gx[t, i]) - 1 - half, float(win.gx[t, i]) - 1 + half
                y0, y1 = float(win.gy[t, i]) - 1 - half, float(win.gy[t, i]) - 1 + half
                x0, x1 = max(x0, -0.5), min(x1, W - 0.5)
                y0, y1 = max(y0, -0.5), min(y1, H - 0.5)
                if x1 <= x0 or y1 <= y0:
                    continue  # the window is off the image
                draw.rectangle([(ox + x0 + 0.5) * scale, (oy + y0 + 0.5) * scale,
                                (ox + x1 + 0.5) * scale - 1, (oy + y1 + 0.5) * scale - 1], outline=colour, width=1)
        frames.append(im)
    return frames


def gif_bytes(frames: list[Image.Image], frame_ms: int = 60, hold_last_ms: int = 1500) -> bytes:
    """An endlessly looping GIF whose last frame (the finished drawing) stays up a while."""
    buf = io.BytesIO()
    durations = [frame_ms] * (len(frames) - 1) + [hold_last_ms]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   optimize=False, disposal=1)
    return buf.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@torch.no_grad()
def sample_pictures(model, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
                    animate: int = 9, max_frames: int = 32) -> tuple[Image.Image, bytes]:
    """A grid of `n` samples, and a small GIF of drawing the first `animate` of them: at most `max_frames`
    frames (every k-th step and the last), at twice the size — a few hundred kB for the paper's T = 64,
    as W&B and the run's media folder keep one per evaluation."""
    images, record = model.sample(n, generator=generator, temperature=temperature, record=True)
    write_n = model.config.write_n if model.config.attention else None
    return grid_image(images), gif_bytes(drawing_frames(thinned(record, animate, max_frames), write_n, scale=2))


def thinned(record: DrawingRecord, images: int, max_frames: int) -> DrawingRecord:
    """The drawing of the first `images` images only, at most `max_frames` of its steps: every k-th step,
    ending on the finished drawing. (An animation's size grows with both: 64 images over 64 steps make a
    GIF of several MB.)"""
    T = record.canvases.shape[0]
    steps = sorted(set(range(T - 1, -1, -math.ceil(T / max_frames))))
    canvases = record.canvases[steps, :images]
    windows = [None if w is None else type(w)(*(f[steps, :images] for f in w))
               for w in (record.write_windows, record.read_windows)]
    return dataclasses.replace(record, canvases=canvases, write_windows=windows[0], read_windows=windows[1])
