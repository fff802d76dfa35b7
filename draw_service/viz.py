"""Pictures of the model: sample grids and animations of the canvas being drawn, write window on top."""

from __future__ import annotations

import io
import math

import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid

from .model import DrawingRecord

PADDING = 2
WINDOW_COLOUR = (255, 40, 40)


def _nrow(n: int) -> int:
    return max(1, math.ceil(math.sqrt(n)))


def grid_image(images: Tensor, nrow: int | None = None, scale: int = 2) -> Image.Image:
    """`(n, C, H, W)` in [0, 1] → one RGB picture, images in rows of `nrow`, upscaled by `scale`."""
    images = images.detach().float().cpu().clamp(0, 1)
    grid = make_grid(images, nrow=nrow or _nrow(len(images)), padding=PADDING, pad_value=0.35)
    im = to_pil_image(grid).convert("RGB")
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale != 1 else im


def drawing_frames(record: DrawingRecord, write_n: int | None, nrow: int | None = None,
                   scale: int = 3) -> list[Image.Image]:
    """One picture per step t: the canvases σ(c_t) with each image's write window as a red box.

    The box spans the write grid's N filter centres plus half a stride each side: the patch the
    decoder paints at step t. Attention-free models get no boxes.
    """
    T, n, C, H, W = record.canvases.shape
    nrow = nrow or _nrow(n)
    frames = []
    for t in range(T):
        im = grid_image(record.canvases[t], nrow, scale)
        if record.write_windows is not None and write_n is not None:
            draw = ImageDraw.Draw(im)
            win = record.write_windows
            for i in range(n):
                row, col = divmod(i, nrow)
                ox, oy = PADDING + col * (W + PADDING), PADDING + row * (H + PADDING)
                half = write_n / 2 * float(win.delta[t, i])
                # Pixel coordinates run from 1; the picture's from 0.
                x0, x1 = float(win.gx[t, i]) - 1 - half, float(win.gx[t, i]) - 1 + half
                y0, y1 = float(win.gy[t, i]) - 1 - half, float(win.gy[t, i]) - 1 + half
                x0, x1 = max(x0, -0.5), min(x1, W - 0.5)
                y0, y1 = max(y0, -0.5), min(y1, H - 0.5)
                if x1 <= x0 or y1 <= y0:
                    continue  # the window is off the image
                draw.rectangle([(ox + x0 + 0.5) * scale, (oy + y0 + 0.5) * scale,
                                (ox + x1 + 0.5) * scale - 1, (oy + y1 + 0.5) * scale - 1],
                               outline=WINDOW_COLOUR, width=1)
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
                    animate: int = 16) -> tuple[Image.Image, bytes]:
    """A grid of `n` samples, and a GIF of drawing the first `animate` of them (GIFs grow with T × n)."""
    images, record = model.sample(n, generator=generator, temperature=temperature, record=True)
    write_n = model.config.write_n if model.config.attention else None
    record.canvases = record.canvases[:, :animate]
    if record.write_windows is not None:
        record.write_windows = type(record.write_windows)(*(f[:, :animate] for f in record.write_windows))
    return grid_image(images), gif_bytes(drawing_frames(record, write_n))
