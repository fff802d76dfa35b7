"""Images sent to the service for scoring or reconstruction, checked before anything is decoded.

A PNG upload is checked from its header alone — the format, the dimensions against the model's, the
pixel count — so a decompression bomb (a few kilobytes that inflate to gigapixels) is refused before a
byte of it is inflated. Arrays sent as JSON are checked for shape, finiteness and range.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 1024 * 1024  # far above any model's images; what a header may claim before it is refused


class UploadError(Exception):
    """An upload this service will not decode; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, kind: str = "image_invalid", loc: tuple = ("body",)):
        super().__init__(message)
        self.status, self.kind, self.loc = status, kind, loc


def png_to_array(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """A PNG of the model's size → `(1, C, H, W)` uint8, converted to the model's channels."""
    from PIL import Image

    channels, height, width = shape
    if not data.startswith(PNG_SIGNATURE):
        raise UploadError(415, "the body is not a PNG image (send image/png, or JSON arrays)", "unsupported_media")
    try:
        im = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as err:  # Pillow's own guard, for headers claiming far too many pixels
        raise UploadError(413, f"the image claims too many pixels, over the limit of {MAX_PIXELS}", "too_large") \
            from err
    except Exception as err:
        raise UploadError(422, f"not a readable PNG image ({type(err).__name__})") from err
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise UploadError(413, f"the image claims {w}x{h} pixels, over the limit of {MAX_PIXELS}", "too_large")
    if (h, w) != (height, width):
        raise UploadError(422, f"the image is {w}x{h} (width x height); this model draws {width}x{height} images")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
            im = im.convert("L" if channels == 1 else "RGB")
    except Exception as err:
        raise UploadError(422, f"the PNG image could not be decoded ({type(err).__name__})") from err
    a = np.asarray(im, dtype=np.uint8)
    return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1))[None]


def arrays_to_batch(images: object, shape: tuple[int, int, int], max_n: int) -> np.ndarray:
    """JSON arrays `(n, C, H, W)` of values in [0, 1] → float64 `(n, C, H, W)`."""
    try:
        a = np.asarray(images, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise UploadError(422, f"images must be nested arrays of numbers ({type(err).__name__})") from err
    if a.ndim != 4 or tuple(a.shape[1:]) != tuple(shape) or not 1 <= len(a) <= max_n:
        raise UploadError(422, f"images must have shape (n, {shape[0]}, {shape[1]}, {shape[2]}) with 1 <= n <= "
                               f"{max_n}, got {a.shape}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise UploadError(422, "pixel values must be finite numbers in [0, 1]")
    return a


def request_images(body: bytes, content_type: str, model: type, field: str, shape: tuple[int, int, int],
                   max_n: int) -> np.ndarray:
    """The images of a /score or /reconstruct body, float64 `(n, C, H, W)` in [0, 1]: one PNG, or the JSON
    model `model` whose `field` holds the arrays (`images`, or one `image`)."""
    from pydantic import ValidationError

    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "image/png":
        return png_to_array(body, shape).astype(np.float64) / 255
    if ctype not in ("application/json", ""):
        raise UploadError(415, f"send image/png or application/json, not {ctype}", "unsupported_media")
    try:
        req = model.model_validate_json(body)
    except ValidationError as err:
        first = err.errors()[0]
        raise UploadError(422, first.get("msg", "invalid"), first.get("type", "invalid"),
                          ("body", *first.get("loc", ()))) from None
    images = getattr(req, field)
    return arrays_to_batch(images if field == "images" else [images], shape, max_n)


def as_model_input(pixels: np.ndarray, likelihood: str):
    """Pixel values in [0, 1] `(n, C, H, W)` as a model of that likelihood reads them: binary pixels for the
    paper's Bernoulli (as it was trained on), else the nearest 8-bit values."""
    import torch

    x = torch.as_tensor(pixels, dtype=torch.float32)
    if likelihood == "bernoulli":
        return (x >= 0.5).float()
    return torch.round(x * 255) / 255
