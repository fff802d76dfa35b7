"""Images sent to the service for scoring or reconstruction, checked before anything is decoded.

An uploaded picture (PNG or JPEG, of any size, grey, RGB or with alpha: a photo from a phone) is checked from
its header alone first — the format and the pixel count — so a decompression bomb (a few kilobytes that
inflate to gigapixels) is refused before a byte of it is inflated. It is then brought to the model's shape
as torchvision's `Resize(min(H, W))` then `CenterCrop((H, W))` would (the short side scaled to the model's,
the middle kept), its channels converted (transparent pixels become the background, black, as in MNIST),
and the answer says what was done (`resized_from`). Arrays sent as JSON are checked for shape, finiteness
and range: they are the model's own pixels, taken as they are.
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


PICTURE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}  # what an upload may be, and Pillow's name for it
SIGNATURES = {"PNG": (PNG_SIGNATURE,), "JPEG": (b"\xff\xd8\xff",)}


def picture_to_array(data: bytes, shape: tuple[int, int, int],
                     kind: str = "PNG") -> tuple[np.ndarray, tuple[int, int] | None]:
    """A picture of any size → (`(1, C, H, W)` uint8 in the model's shape, its own (height, width) where it
    had to be resized, else None)."""
    from PIL import Image
    from torchvision.transforms import v2

    channels, height, width = shape
    if not data.startswith(SIGNATURES[kind]):
        raise UploadError(415, f"the body is not a {kind} image (send image/png, image/jpeg, or JSON arrays)",
                          "unsupported_media")
    try:
        im = Image.open(io.BytesIO(data), formats=[kind])  # reads the header only
    except Image.DecompressionBombError as err:  # Pillow's own guard, for headers claiming far too many pixels
        raise UploadError(413, f"the image claims too many pixels, over the limit of {MAX_PIXELS}", "too_large") \
            from err
    except Exception as err:
        raise UploadError(422, f"not a readable {kind} image ({type(err).__name__})") from err
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise UploadError(413, f"the image claims {w}x{h} pixels, over the limit of {MAX_PIXELS}", "too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", im.size, (0, 0, 0, 255)), im)
            im = im.convert("L" if channels == 1 else "RGB")
    except Exception as err:
        raise UploadError(422, f"the {kind} image could not be decoded ({type(err).__name__})") from err
    resized_from = None
    if (h, w) != (height, width):
        im = v2.CenterCrop((height, width))(v2.Resize(min(height, width), antialias=True)(im))
        resized_from = (h, w)
    a = np.asarray(im, dtype=np.uint8)
    return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1))[None], resized_from


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
                   max_n: int) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The images of a /score or /reconstruct body, float64 `(n, C, H, W)` in [0, 1], and the (height, width)
    an uploaded picture was resized from (None when nothing was resized): one PNG or JPEG, or the JSON model
    `model` whose `field` holds the arrays (`images`, or one `image`)."""
    from pydantic import ValidationError

    ctype = content_type.split(";")[0].strip().lower()
    if ctype in PICTURE_TYPES:
        pixels, resized_from = picture_to_array(body, shape, PICTURE_TYPES[ctype])
        return pixels.astype(np.float64) / 255, resized_from
    if ctype not in ("application/json", ""):
        raise UploadError(415, f"send image/png, image/jpeg or application/json, not {ctype}", "unsupported_media")
    try:
        req = model.model_validate_json(body)
    except ValidationError as err:
        first = err.errors()[0]
        raise UploadError(422, first.get("msg", "invalid"), first.get("type", "invalid"),
                          ("body", *first.get("loc", ()))) from None
    images = getattr(req, field)
    return arrays_to_batch(images if field == "images" else [images], shape, max_n), None


def as_model_input(pixels: np.ndarray, likelihood: str):
    """Pixel values in [0, 1] `(n, C, H, W)` as a model of that likelihood reads them: binary pixels for the
    paper's Bernoulli (as it was trained on), else the nearest 8-bit values."""
    import torch

    x = torch.as_tensor(pixels, dtype=torch.float32)
    if likelihood == "bernoulli":
        return (x >= 0.5).float()
    return torch.round(x * 255) / 255
